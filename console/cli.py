"""``cortex-console``: parse the command line first, then pick the TUI or the script path.

The script path (``--json`` or a command) imports :mod:`cortex.console.script` only, so
it never loads Textual and answers fast; the TUI is imported only when it is wanted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cortex.common.ports import GATEWAY_PORT
from cortex.console.format import VRAM_THRESHOLDS, Thresholds

DEFAULT_GATEWAY = f"http://127.0.0.1:{GATEWAY_PORT}"

QUERIES = ("status", "nodes", "models", "gpus")
ACTIONS = ("load", "unload", "pin", "unpin", "replicas")

EPILOG = """\
scripting (prints one JSON document; errors go to stderr as JSON):
  cortex-console --json status|nodes|models|gpus
  cortex-console --json load MODEL [--neuron N] [--no-wait]
  cortex-console --json unload MODEL [--neuron N] [--force]
  cortex-console --json pin|unpin MODEL
  cortex-console --json replicas MODEL MIN MAX
exit codes: 0 done, 1 refused by the gateway, 2 bad arguments, 3 gateway unreachable.
environment: CORTEX_GATEWAY (default gateway URL), CORTEX_TOKEN (admin token).
"""


def default_gateway() -> str:
    return os.environ.get("CORTEX_GATEWAY") or DEFAULT_GATEWAY


def default_token() -> str | None:
    return os.environ.get("CORTEX_TOKEN") or None


def _thresholds(text: str) -> Thresholds:
    try:
        return Thresholds.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0 seconds")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _shared(parser: argparse.ArgumentParser, default: object) -> None:
    """Options accepted before and after the command (``load X --json`` works too)."""

    def value(v: object) -> object:
        return argparse.SUPPRESS if default is argparse.SUPPRESS else v

    parser.add_argument(
        "--gateway",
        metavar="URL",
        default=value(default_gateway()),
        help="the gateway's URL (default: $CORTEX_GATEWAY or %(default)s)",
    )
    parser.add_argument(
        "--token",
        metavar="T",
        default=value(default_token()),
        help="admin token for actions, sent as a Bearer token (default: $CORTEX_TOKEN)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=value(False),
        help="print one JSON document and exit instead of opening the console",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        metavar="S",
        default=value(None),
        help="seconds to wait for the gateway (default: 10 for queries, 900 for actions)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cortex-console",
        description="Live console for a cortex fleet, and --json scripting of the same.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _shared(parser, None)
    parser.add_argument(
        "--readonly",
        action="store_true",
        help="show the fleet but offer no load/unload/pin actions",
    )
    parser.add_argument(
        "--vram-thresholds",
        type=_thresholds,
        metavar="WARN,CRIT",
        default=VRAM_THRESHOLDS,
        help="memory bar colours: yellow from WARN %%, red from CRIT %% (default: 75,90)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for query in QUERIES:
        sub = commands.add_parser(query, help=f"print the fleet's {query} as JSON")
        _shared(sub, argparse.SUPPRESS)
    for action in ACTIONS:
        help_text = (
            "keep MIN to MAX replicas of a model (saved by the gateway)"
            if action == "replicas"
            else f"{action} a model and print the result"
        )
        sub = commands.add_parser(action, help=help_text)
        sub.add_argument("model", metavar="MODEL", help="model id, as the catalogue lists it")
        if action == "replicas":
            sub.add_argument("min", metavar="MIN", type=_count, help="replicas kept loaded")
            sub.add_argument("max", metavar="MAX", type=_count, help="most replicas under load")
        if action == "load":
            sub.add_argument(
                "--neuron", metavar="N", help="where to load it (default: the scheduler picks)"
            )
            sub.add_argument(
                "--no-wait",
                dest="wait",
                action="store_false",
                help="answer once the load has started instead of when it is done",
            )
        if action == "unload":
            sub.add_argument(
                "--neuron", metavar="N", help="unload from this neuron only (default: all)"
            )
            sub.add_argument(
                "--force",
                action="store_true",
                help="unload even with requests in flight (they fail)",
            )
        _shared(sub, argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or ("status" if args.json else None)
    if command is not None:
        if args.readonly and command in ACTIONS:
            parser.error(f"--readonly refuses actions; drop it to {command} a model")
        from cortex.console import script

        timeout = args.timeout or (900.0 if command in ACTIONS else 10.0)
        return script.run(
            command,
            gateway=args.gateway,
            token=args.token,
            model=getattr(args, "model", None),
            neuron=getattr(args, "neuron", None),
            wait=getattr(args, "wait", True),
            force=getattr(args, "force", False),
            replicas=(args.min, args.max) if command == "replicas" else None,
            timeout=timeout,
        )

    from cortex.console.app import run_console

    return run_console(
        gateway=args.gateway,
        token=args.token,
        readonly=args.readonly,
        vram_thresholds=args.vram_thresholds,
    )


if __name__ == "__main__":
    sys.exit(main())
