"""How long Claude Code's first, second and third request take on the demo fleet.

    .venv/bin/python tests/benchmarks/bench_claude_code.py [--rounds 1] [--model NAME]

Starts ``make demo``'s fleet (``python -m cortex.services.demo_fleet --no-console`` on
free ports, models generated into a temporary folder), loads demo-long (where
``claude-*`` goes) and then runs the real Claude Code CLI from npm, unmodified: a first
turn (``claude -p "say hi"``), a second and a third (``--continue``), each round with a
fresh HOME. Claude Code's first run in a fresh HOME says "(1M context)" in its system
prompt and tools, later runs do not, so the second turn's prompt shares only its first
~2.5k tokens with the first's; the third turn is the one that shows the prefix cache.
For every /v1/messages request it prints what the gateway logged: the prompt and
completion tokens, the time to the first token and the total, and the prefill rate
(prompt tokens / TTFT), plus the wall time and cached prompt tokens of each run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.claude_code import claude_code, run_claude, version  # noqa: E402
from support.demo import launch_demo  # noqa: E402

LINE = re.compile(
    r"POST /v1/messages\S* status=(\d+) model=(\S+) neuron=\S+ endpoint=messages "
    r"prompt=(\d+) completion=(\d+) ttft_ms=([\d.]+|-) (?:\S+=\S+ )*?total_ms=([\d.]+)"
)


def start_demo(root: Path) -> tuple[subprocess.Popen, str]:
    demo = launch_demo(root)
    assert demo.process.stdout is not None
    for line in demo.process.stdout:
        if "Ctrl-C stops the fleet" in line:
            return demo.process, demo.gateway_url
    raise SystemExit("the demo fleet did not come up")


def requests(log: Path, since: int) -> list[dict]:
    found = []
    for line in log.read_text().splitlines()[since:]:
        match = LINE.search(line)
        if match:
            status, model, prompt, completion, ttft, total = match.groups()
            found.append(
                {
                    "status": int(status),
                    "model": model,
                    "prompt": int(prompt),
                    "completion": int(completion),
                    "ttft_s": float(ttft) / 1000 if ttft != "-" else None,
                    "total_s": float(total) / 1000,
                }
            )
    return found


def describe(r: dict) -> str:
    ttft = r["ttft_s"]
    rate = f"{r['prompt'] / ttft:,.0f} tok/s" if ttft else "-"
    shown = "-" if ttft is None else f"{ttft:.1f}s"
    return (
        f"POST /v1/messages {r['status']} {r['model']}: prompt {r['prompt']:,} tokens, "
        f"completion {r['completion']}, TTFT {shown}, total {r['total_s']:.1f}s, prefill {rate}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default="", help="--model for claude (default: its own)")
    args = parser.parse_args()
    binary = claude_code()
    with tempfile.TemporaryDirectory(prefix="bench-claude-") as tmp:
        root = Path(tmp)
        launcher, url = start_demo(root / "demo")
        log = root / "demo" / "logs" / "gateway.log"
        try:
            started = time.perf_counter()
            load = httpx.post(url + "/fleet/models/demo-long/load", timeout=300)
            load.raise_for_status()
            loaded_s = time.perf_counter() - started
            print(f"claude {version(binary)}; demo-long loaded in {loaded_s:.1f}s")
            extra = ("--model", args.model) if args.model else ()
            for round_ in range(1, args.rounds + 1):
                user = {"home": root / f"home-{round_}", "cwd": root / f"project-{round_}"}
                for turn, prompt, more in (
                    ("first", "say hi", ()),
                    ("second", "and again", ("--continue",)),
                    ("third", "once more", ("--continue",)),
                ):
                    since = len(log.read_text().splitlines())
                    run = run_claude(binary, url, prompt, *extra, *more, **user, timeout=1200)
                    ok = run.returncode == 0 and not run.reply["is_error"]
                    cached = run.reply.get("usage", {}).get("cache_read_input_tokens", 0)
                    print(
                        f"round {round_} {turn} turn: claude -p {prompt!r} "
                        f"{'ok' if ok else 'FAILED'}, wall {run.seconds:.1f}s, "
                        f"cache_read_input_tokens {cached:,}"
                    )
                    for r in requests(log, since):
                        print("  " + describe(r))
        finally:
            launcher.terminate()
            launcher.wait(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
