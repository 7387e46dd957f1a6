"""The installed layout: everything under `cortex.*`, nothing generic at the top level."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_puts_only_cortex_at_the_top_of_site_packages(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("cortex_fleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"cortex", next(t for t in top if t.endswith(".dist-info"))}
    assert "cortex/__init__.py" not in names  # a namespace package
    for module in (
        "cortex/common/config.py",
        "cortex/services/neuron/cli.py",
        "cortex/services/gateway/__init__.py",
        "cortex/console/__init__.py",
        "cortex/services/neuron/demo/corpus.txt",
        "cortex/services/neuron/demo/chat_template.jinja",
    ):
        assert module in names, module
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    for script in ("cortex-gateway", "cortex-neuron", "cortex-console"):
        assert f"{script} = cortex." in entry_points


def test_imports_as_cortex_and_not_as_generic_names(tmp_path):
    code = (
        "import importlib.util, cortex.common.config, cortex.services.neuron, cortex.console\n"
        "generic = ('common', 'services', 'console')\n"
        "assert all(importlib.util.find_spec(name) is None for name in generic)\n"
        "print(cortex.common.config.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "cortex.common.config"


def test_the_link_tree_for_static_tools_maps_what_setup_maps():
    """.typing/cortex/ (read by mypy and pyright) names the folders setup.py installs."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    (folders,) = [
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FOLDERS"
    ]
    links = ROOT / ".typing" / "cortex"
    assert {p.name for p in links.iterdir()} == set(folders)
    for folder, namespace in folders.items():
        assert namespace == f"cortex.{folder}"
        link = links / folder
        assert link.is_symlink() and not Path(os.readlink(link)).is_absolute()
        assert link.resolve() == (ROOT / folder).resolve()
