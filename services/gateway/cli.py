"""``cortex-gateway``: one OpenAI + Anthropic API for the fleet, metrics on a second port.

cortex-gateway [--config cortex.toml] [--listen HOST:PORT] [--metrics-listen HOST:PORT]
               [--log-level debug|info|warning|error]

Without --config (and without $CORTEX_CONFIG) it starts on the defaults: one neuron at
http://127.0.0.1:13131. A bad config file prints what is wrong and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Generator

import uvicorn

from cortex.common.config import ConfigError, parse_listen
from cortex.common.systemd import notify_when_started

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _QuietServer(uvicorn.Server):
    """The metrics server: the main server owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cortex-gateway",
        description="One OpenAI + Anthropic compatible API for a fleet of cortex neurons.",
    )
    parser.add_argument(
        "--config", help="cortex.toml (default: $CORTEX_CONFIG, else built-in defaults)"
    )
    parser.add_argument("--listen", help="HOST:PORT for the API (default 127.0.0.1:31313)")
    parser.add_argument(
        "--metrics-listen", help="HOST:PORT for Prometheus /metrics (default 127.0.0.1:31314)"
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from cortex.services.gateway.settings import Settings

    try:
        settings = Settings.load(args.config or os.environ.get("CORTEX_CONFIG") or None)
        section = settings.config.gateway
        if args.listen:
            parse_listen(args.listen)
            section.listen = args.listen
        if args.metrics_listen:
            parse_listen(args.metrics_listen)
            section.metrics_listen = args.metrics_listen
        if args.log_level:
            section.log_level = args.log_level
    except ConfigError as exc:
        print(f"cortex-gateway: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"cortex-gateway: bad --listen/--metrics-listen: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=section.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop_factory()) as r:
        r.run(serve(settings))
    return 0


def _loop_factory():
    """uvloop when installed (it is a dependency on Linux): the proxy relays every chunk
    through the event loop, and uvloop's transports cost less per chunk."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def serve(settings) -> None:
    from cortex.services.gateway import access_log
    from cortex.services.gateway.app import create_app
    from cortex.services.gateway.metrics import metrics_app

    section = settings.config.gateway
    app = create_app(settings)
    host, port = parse_listen(section.listen)
    metrics_host, metrics_port = parse_listen(section.metrics_listen)
    level = logging.getLevelName(section.log_level.upper())
    # The gateway writes its own line per request (access_log); uvicorn's is off in both
    # servers. (uvicorn's access_log=False empties the process-wide uvicorn.access
    # logger, so the metrics server's config used to silence the API's too.)
    api = uvicorn.Server(
        uvicorn.Config(
            access_log.middleware(app),
            host=host,
            port=port,
            log_level=level,
            access_log=False,
            log_config=None,
            timeout_keep_alive=75,
            proxy_headers=False,  # client addresses are not used; saves a middleware hop
            backlog=4096,
        )
    )
    metrics = _QuietServer(
        uvicorn.Config(
            metrics_app(app.state.gateway.metrics),
            host=metrics_host,
            port=metrics_port,
            log_level=level,
            access_log=False,
            log_config=None,
            lifespan="off",
        )
    )
    notify_when_started(api, f"serving on {section.listen}, metrics on {section.metrics_listen}")
    metrics_task = asyncio.create_task(metrics.serve())
    try:
        await api.serve()
    finally:
        metrics.should_exit = True
        await metrics_task
    if not api.started:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())
