"""packaging/systemd: units verified by systemd-analyze, readiness through sd_notify."""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron

from cortex.common.systemd import notify_ready

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
BIN = Path(sys.executable).parent


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(UNITS / name)
    return parser


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian/Ubuntu: apt-get install systemd)",
)
def test_units_pass_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart exists: point it at this checkout's console scripts.
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/usr/bin/cortex-", f"{BIN}/cortex-")
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
    )
    # verify exits 0 on unknown keys and bad values; its warnings are the failures.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize(
    ("unit", "command", "config"),
    [
        ("cortex-gateway.service", "cortex-gateway", "/etc/cortex/cortex.toml"),
        ("cortex-neuron.service", "cortex-neuron", "/etc/cortex/neuron.toml"),
    ],
)
def test_units_run_the_installed_command_as_the_cortex_user(unit, command, config):
    service = read_unit(unit)["Service"]
    assert service["ExecStart"] == f"/usr/bin/{command} --config {config}"
    assert service["Type"] == "notify"
    assert (service["User"], service["Group"]) == ("cortex", "cortex")
    assert service["Restart"] == "on-failure"
    assert (BIN / command).exists()


def test_neuron_unit_admits_nvidia_devices_and_gateway_unit_none():
    neuron = (UNITS / "cortex-neuron.service").read_text()
    assert "PrivateDevices=yes" not in neuron
    assert "MemoryDenyWriteExecute=yes" not in neuron
    assert "DeviceAllow=char-nvidia-frontend rw" in neuron
    assert "DeviceAllow=char-nvidia-uvm rw" in neuron
    gateway = read_unit("cortex-gateway.service")["Service"]
    assert gateway["PrivateDevices"] == "yes"


def test_notify_ready_reaches_the_notify_socket(tmp_path, monkeypatch):
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert notify_ready("serving on 127.0.0.1:31313") is True
        assert listener.recv(1024) == b"READY=1\nSTATUS=serving on 127.0.0.1:31313"


@pytest.mark.parametrize("daemon", ["neuron", "gateway"])
def test_daemons_report_ready_once_their_port_answers(daemon, demo_models, tmp_path):
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(60)
        env = {"NOTIFY_SOCKET": address}
        if daemon == "neuron":
            launcher = start_neuron(demo_models.root, tmp_path / "n", env=env)
        else:
            launcher = start_gateway(tmp_path / "g", neurons={"a": "http://127.0.0.1:9"}, env=env)
        with launcher as process:
            message = listener.recv(1024).decode()
            assert message.startswith("READY=1\nSTATUS=serving on 127.0.0.1:")
            assert process.get("/health").status_code == 200


def test_notify_is_a_no_op_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify_ready() is False
