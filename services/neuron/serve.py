"""``cortex-neuron`` (the daemon): parse arguments, read neuron.toml, serve with uvicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import msgspec

from cortex.common.config import NeuronConfig, load_config, parse_listen
from cortex.common.systemd import notify_when_started

log = logging.getLogger("cortex.neuron")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cortex-neuron",
        description="The per-host inference daemon of cortex. "
        "Subcommand: `cortex-neuron demo-model` writes the demo model.",
    )
    parser.add_argument("--config", type=Path, help="neuron.toml (default: built-in defaults)")
    parser.add_argument("--listen", help="HOST:PORT to serve on (overrides neuron.toml)")
    parser.add_argument("--models-dir", type=Path, help="models directory (overrides neuron.toml)")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides neuron.toml"
    )
    return parser.parse_args(argv)


def serve_main(argv: list[str]) -> int:
    args = parse_args(argv)
    config = load_config(args.config, NeuronConfig)
    settings = config.neuron
    changes = {}
    if args.listen:
        try:
            parse_listen(args.listen)
        except ValueError as exc:
            raise SystemExit(f"cortex-neuron: --listen: {exc}") from None
        changes["listen"] = args.listen
    if args.models_dir:
        changes["models_dir"] = str(args.models_dir)
    if args.log_level:
        changes["log_level"] = args.log_level
    if changes:
        settings = msgspec.structs.replace(settings, **changes)

    import uvicorn

    from cortex.services.neuron.app import create_app
    from cortex.services.neuron.http_support import configure_logging

    configure_logging(settings.log_level)
    host, port = parse_listen(settings.listen)
    app = create_app(settings)
    manager = app.state.manager
    log.info(
        "cortex-neuron %s listening on %s:%d, models in %s, backends: %s",
        settings.node_name,
        host,
        port,
        manager.catalog.root,
        ", ".join(manager.chooser.available()) or "none",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            # Longer than the gateway keeps an idle connection (60 s), so an idle close
            # comes from the gateway's side and never races a request being written.
            timeout_keep_alive=75,
        )
    )
    notify_when_started(server, f"serving on {host}:{port}")
    server.run()
    return 0
