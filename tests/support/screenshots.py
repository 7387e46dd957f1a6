"""Regenerate the console screenshots in ``screenshots/`` from a real demo fleet.

    .venv/bin/python tests/support/screenshots.py [--out screenshots] [--size 140x40]

Starts two real CPU neurons (``node-a``, ``node-b``; demo-tiny and demo-small on disk)
and a real gateway on loopback, loads and pins demo-tiny on node-a, keeps a few streams
running against it (OpenAI chat and Anthropic messages) so the tok/s figures and
sparklines move, then drives the console headless and saves:

- ``console-main.svg``: the main screen (header, nodes, models, event log);
- ``console-requests.svg``: ``2``, the requests in flight in the top pane;
- ``console-load-dialog.svg``: ``l``, demo-small picked, node-b as the target;
- ``console-loading.svg``: demo-small loading on node-b, its progress bar in the table.

Each SVG also gets a PNG when cairosvg is installed (``pip install cairosvg``; it needs
the system's libcairo). Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import httpx  # noqa: E402

from support.gateway import start_gateway  # noqa: E402
from support.models import make_demo_models  # noqa: E402
from support.neuron import start_neuron  # noqa: E402
from support.streams import NO_EOS  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


class Traffic:
    """A few streams against the gateway, so the console has something to show: each
    thread speaks one client dialect, and its streams are long enough (NO_EOS) to be
    seen in the requests view."""

    DIALECTS = ("chat", "messages", "chat")

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(dialect,), daemon=True)
            for dialect in self.DIALECTS
        ]
        self.completed = 0

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _request(self, dialect: str) -> tuple[str, dict]:
        messages = [{"role": "user", "content": "Tell me about the fleet."}]
        body = {"model": self.model, "messages": messages, "max_tokens": 1500, "stream": True}
        if dialect == "messages":
            return "/v1/messages", body  # no logit_bias in Anthropic's API: it may end early
        return "/v1/chat/completions", {**body, "logit_bias": NO_EOS}

    def _run(self, dialect: str) -> None:
        path, body = self._request(dialect)
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self.stop.is_set():
                with client.stream("POST", path, json=body) as response:
                    for _ in response.iter_bytes():
                        pass
                self.completed += 1


async def until(pilot, predicate: Callable[[], object], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {within:.0f}s")
        await pilot.pause(0.1)


async def capture(gateway_url: str, out: Path, size: tuple[int, int]) -> list[Path]:
    from cortex.console.app import CortexConsole
    from cortex.console.screens.load import LoadScreen

    app = CortexConsole(gateway=gateway_url)
    saved: list[Path] = []

    def save(name: str, svg: str | None = None) -> None:
        (out / name).write_text(svg or app.export_screenshot(), encoding="utf-8")
        if out / name not in saved:
            saved.append(out / name)
        print(f"  wrote {out / name}")

    async with app.run_test(size=size) as pilot:
        tiny = ("demo-tiny", "node-a")
        await until(pilot, lambda: len(app.state.neurons) == 2, 60, "both neurons")
        await until(
            pilot,
            lambda: (p := app.state.placements.get(tiny)) is not None and p.tokens_per_s > 0,
            120,
            "traffic on demo-tiny",
        )
        # Twelve seconds of history: the sparkline has a shape.
        await pilot.pause(12)
        save("console-main.svg")

        await pilot.press("2")
        await until(
            pilot,
            lambda: sum(r.ttft_ms is not None for r in app.state.requests) >= 2,
            60,
            "two requests streaming",
        )
        await pilot.pause(0.6)  # one flush of the table
        save("console-requests.svg")
        await pilot.press("1")

        await pilot.press("l")
        assert isinstance(app.screen, LoadScreen)
        app.screen.select("demo-small", "node-b")
        await pilot.pause(0.3)
        save("console-load-dialog.svg")
        await pilot.click("#load-confirm")

        small = ("demo-small", "node-b")

        def placement():
            return app.state.placements.get(small)

        await until(pilot, lambda: (p := placement()) and p.state == "loading", 60, "loading")
        await pilot.pause(0.6)  # one flush of the table
        save("console-loading.svg")
        # A neuron that counts modules shows a bar: prefer a picture of it part-way,
        # taken only if the load is still going once the table has caught up.
        while (p := placement()) is not None and p.state == "loading":
            if p.progress is not None and 0 < p.progress.fraction < 1:
                await pilot.pause(0.6)
                svg = app.export_screenshot()
                if (p := placement()) is not None and p.state == "loading":
                    save("console-loading.svg", svg)
                break
            await pilot.pause(0.1)
        await until(
            pilot,
            lambda: (p := app.state.placements.get(small)) is not None and p.state == "loaded",
            180,
            "demo-small loaded",
        )
        await pilot.press("q")
    return saved


def to_png(svg: Path) -> Path | None:
    """PNG beside the SVG, with a monospace font the system has (Textual's SVG asks for
    Fira Code, which converters without web fonts replace by a proportional one)."""
    try:
        import cairosvg
    except ImportError:
        return None
    text = svg.read_text(encoding="utf-8")
    text = re.sub(r"Fira Code, monospace", "DejaVu Sans Mono, Fira Code, monospace", text)
    png = svg.with_suffix(".png")
    cairosvg.svg2png(bytestring=text.encode(), write_to=str(png), output_width=1800)
    return png


def main() -> int:
    parser = argparse.ArgumentParser(description="Regenerate the console screenshots.")
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--size", type=parse_size, default=(140, 40), help="COLSxROWS")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="cortex-screenshots-") as tmp:
        root = Path(tmp)
        print("generating the demo models and starting two neurons and a gateway...")
        models = make_demo_models(root / "models")
        with (
            start_neuron(models.root, root / "node-a", settings={"name": "node-a"}) as node_a,
            start_neuron(models.root, root / "node-b", settings={"name": "node-b"}) as node_b,
            start_gateway(
                root / "gateway", neurons={"node-a": node_a.url, "node-b": node_b.url}
            ) as gateway,
        ):
            gateway.wait_neurons_up()
            print("loading and pinning demo-tiny on node-a...")
            target = {"neuron": "node-a"}
            gateway.post("/fleet/models/demo-tiny/load", json=target).raise_for_status()
            gateway.post("/fleet/models/demo-tiny/pin").raise_for_status()
            with Traffic(gateway.url, "demo-tiny"):
                print("capturing...")
                saved = asyncio.run(capture(gateway.url, args.out, args.size))
    for svg in saved:
        png = to_png(svg)
        print(f"  wrote {png}" if png else f"  no PNG for {svg.name}: cairosvg is not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
