"""packaging/rpm: RPMs build here and install into a scratch root with commands and units."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("CORTEX_RPM_PYTHON", "/usr/bin/python3.11")


def python_with_venv() -> bool:
    if not Path(PYTHON).exists():
        return False
    return (
        subprocess.run([PYTHON, "-c", "import venv, ensurepip"], capture_output=True).returncode
        == 0
    )


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("rpmbuild") is None,
        reason="rpmbuild is not installed (Debian/Ubuntu: apt-get install rpm; Fedora: rpm-build)",
    ),
    pytest.mark.skipif(
        not python_with_venv(),
        reason=f"{PYTHON} with venv is needed for the RPM layout (set CORTEX_RPM_PYTHON)",
    ),
]


@pytest.fixture(scope="module")
def installed_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rpms")
    environment = {**os.environ, "PYTHON": PYTHON, "RPM_PAYLOAD": "w1.zstdio"}
    subprocess.run(
        [str(ROOT / "packaging" / "rpm" / "build-rpm.sh"), str(out)],
        env=environment,
        check=True,
        capture_output=True,
        timeout=900,
    )
    rpms = sorted(out.glob("*.rpm"))
    assert [p.name.split("-0")[0] for p in rpms] == ["cortex-fleet", "cortex-fleet-neuron"]
    root = tmp_path_factory.mktemp("scratch-root")
    subprocess.run(["rpm", "--root", str(root), "--initdb"], check=True)
    subprocess.run(
        [
            "rpm",
            "--root",
            str(root),
            "-i",
            "--nodeps",
            "--noscripts",
            "--nosignature",
            *map(str, rpms),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return root


def test_three_commands_are_on_path(installed_root):
    for command in ("cortex-gateway", "cortex-console", "cortex-neuron"):
        link = installed_root / "usr" / "bin" / command
        assert link.is_symlink()
        target = installed_root / os.readlink(link).lstrip("/")
        assert target.is_file()
        assert target.read_text().startswith("#!/opt/cortex/venv/bin/python")


def test_units_and_configs_are_in_place(installed_root):
    for unit in ("cortex-gateway.service", "cortex-neuron.service"):
        installed = installed_root / "usr/lib/systemd/system" / unit
        assert installed.read_bytes() == (ROOT / "packaging/systemd" / unit).read_bytes()
    for name in ("cortex.toml", "models.toml", "neuron.toml"):
        assert (installed_root / "etc/cortex" / name).is_file()
    assert (installed_root / "usr/lib/sysusers.d/cortex.conf").is_file()


def test_gateway_package_carries_no_torch_and_neuron_package_does(installed_root):
    def owned(package: str) -> list[str]:
        result = subprocess.run(
            ["rpm", "--root", str(installed_root), "-ql", package],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.splitlines()

    core, neuron = owned("cortex-fleet"), owned("cortex-fleet-neuron")
    assert not any("/site-packages/torch/" in path for path in core)
    assert any("/site-packages/torch/" in path for path in neuron)
    assert any("/site-packages/cortex/services/gateway/" in path for path in core)
    assert not set(core) & set(neuron)


def test_installed_environment_runs_cortex(installed_root, tmp_path):
    python = installed_root / "opt/cortex/venv/bin/python"
    result = subprocess.run(
        [
            str(python),
            "-m",
            "cortex.services.neuron.cli",
            "demo-model",
            "--out",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m" / "model.safetensors").is_file()
