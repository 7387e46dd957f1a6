"""``cortex-neuron`` on an install without the ``neuron`` extra: one line saying what to
install, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["psutil", "torch", "transformers"])
def test_a_neuron_without_its_extra_says_what_to_install(module, tmp_path):
    # A module set to None in sys.modules is one Python cannot import: as if uninstalled.
    code = (
        f"import sys; sys.modules[{module!r}] = None; "
        "from cortex.services.neuron.cli import main; "
        f"sys.exit(main(['--listen', '127.0.0.1:1', '--models-dir', {str(tmp_path)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "pip install 'cortex-fleet[neuron]'" in lines[0]
    assert module.replace("pynvml", "nvidia-ml-py") in lines[0]
