"""The ``--json`` path without a gateway: argument errors, gateway down, no Textual import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.ports import free_port

from cortex.console.cli import build_parser


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cortex.console.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("command", ["status", "nodes", "models", "gpus"])
def test_query_with_the_gateway_down_exits_3_with_a_json_error(command):
    url = f"http://127.0.0.1:{free_port()}"
    done = run_cli("--json", command, "--gateway", url)
    assert done.returncode == 3
    assert done.stdout == ""
    error = json.loads(done.stderr)["error"]
    assert error["code"] == "gateway_unreachable"
    assert error["status"] is None
    assert url in error["message"] and "--gateway" in error["message"]


@pytest.mark.parametrize(
    "args", [["load", "demo-tiny", "--neuron", "a"], ["unload", "demo-tiny"], ["pin", "m"]]
)
def test_action_with_the_gateway_down_exits_3(args):
    done = run_cli("--gateway", f"127.0.0.1:{free_port()}", "--json", *args)
    assert done.returncode == 3
    assert json.loads(done.stderr)["error"]["type"] == "connection_error"


def test_script_path_never_imports_textual_rich_httpx_or_http_client():
    url = f"http://127.0.0.1:{free_port()}"
    code = (
        "import sys\n"
        "from cortex.console.cli import main\n"
        f"rc = main(['--json', '--gateway', '{url}', 'status'])\n"
        "assert rc == 3, rc\n"
        "tui = ('textual', 'rich', 'httpx')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in tui)\n"
        "print('TUI:' + ','.join(loaded))\n"
        "slow = ('http.client', 'email', 'ssl', 'cortex.console.state')\n"
        "print('SLOW:' + ','.join(m for m in slow if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "TUI:\n" in done.stdout, f"the script path imported {done.stdout}"
    # What made --json status slow to start (see BENCHMARKS.md, console).
    assert "SLOW:\n" in done.stdout, f"the script path imported {done.stdout}"


def test_help_lists_the_script_commands_without_textual():
    done = run_cli("--help")
    assert done.returncode == 0
    for word in ("--json", "status|nodes|models|gpus", "--readonly", "--neuron", "exit codes"):
        assert word in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["load"], "MODEL"),
        (["--readonly", "unload", "m"], "--readonly refuses actions"),
        (["--vram-thresholds", "90,10"], "warn <= crit"),
        (["--timeout", "0", "status"], "must be > 0"),
        (["reboot"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_and_say_why(args, message):
    done = run_cli(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_options_work_after_the_command_too():
    args = build_parser().parse_args(["load", "m", "--json", "--gateway", "h:1", "--neuron", "a"])
    assert (args.command, args.model, args.neuron, args.json, args.gateway) == (
        "load",
        "m",
        "a",
        True,
        "h:1",
    )
    defaults = build_parser().parse_args(["--gateway", "h:2", "status"])
    assert defaults.gateway == "h:2", "a global option is not reset by the subcommand"


def test_environment_supplies_gateway_and_token(monkeypatch):
    monkeypatch.setenv("CORTEX_GATEWAY", "http://gw:1")
    monkeypatch.setenv("CORTEX_TOKEN", "sekret")
    args = build_parser().parse_args(["status"])
    assert (args.gateway, args.token) == ("http://gw:1", "sekret")
