"""The neuron's Litestar application."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from cortex.common.config import NeuronSection
from cortex.services.neuron.api_control import CONTROL_ROUTES
from cortex.services.neuron.api_openai import OPENAI_ROUTES
from cortex.services.neuron.http_support import EXCEPTION_HANDLERS, RequestIdAndAuth
from cortex.services.neuron.manager import VERSION, ModelManager


def create_app(settings: NeuronSection, models_dir: Path | None = None) -> Litestar:
    manager = ModelManager(settings, models_dir)

    @asynccontextmanager
    async def lifespan(app: Litestar):
        await manager.start()
        try:
            yield
        finally:
            await manager.close()

    app = Litestar(
        route_handlers=[*OPENAI_ROUTES, *CONTROL_ROUTES],
        dependencies={"manager": Provide(lambda: manager, use_cache=True, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[DefineMiddleware(RequestIdAndAuth, token=settings.token)],
        lifespan=[lifespan],
        request_max_body_size=settings.max_body,
        openapi_config=OpenAPIConfig(
            title="cortex-neuron",
            version=VERSION,
            description="Per-host inference daemon: OpenAI-compatible generation, model "
            "load/unload, devices, events and metrics.",
            path="/schema",
        ),
        logging_config=None,
    )
    app.state.manager = manager
    return app
