"""The gateway's Litestar app."""

from __future__ import annotations

from contextlib import asynccontextmanager

from litestar import Litestar, Request, get
from litestar.openapi import OpenAPIConfig

from cortex.services.gateway import (
    routes_fleet,
    routes_messages,
    routes_models,
    routes_openai,
    routes_responses,
)
from cortex.services.gateway.errors import handle_exception
from cortex.services.gateway.gateway import Gateway
from cortex.services.gateway.settings import Settings


@get("/health", sync_to_thread=False)
def health(request: Request) -> dict:
    gateway = request.app.state.gateway
    neurons = gateway.scheduler.neurons.values()
    return {
        "status": "ok",
        "neurons_up": sum(1 for n in neurons if n.up),
        "neurons": len(gateway.scheduler.neurons),
    }


def create_app(settings: Settings, gateway: Gateway | None = None) -> Litestar:
    gateway = gateway or Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Litestar(
        route_handlers=[
            health,
            routes_models.about,
            routes_models.about_head,
            routes_models.list_models,
            routes_models.retrieve_model,
            routes_openai.chat_completions,
            routes_openai.completions,
            routes_messages.messages,
            routes_messages.count_tokens,
            routes_responses.create_response,
            routes_responses.retrieve_response,
            routes_responses.delete_response,
            routes_responses.list_input_items,
            routes_fleet.fleet,
            routes_fleet.fleet_logs,
            routes_fleet.fleet_events,
            routes_fleet.load,
            routes_fleet.unload,
            routes_fleet.pin,
            routes_fleet.unpin,
            routes_fleet.replicas,
        ],
        lifespan=[lifespan],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.config.gateway.max_body,
        openapi_config=OpenAPIConfig(title="cortex-gateway", version="0.1.0"),
        logging_config=None,
    )
    app.state.gateway = gateway
    return app
