"""The gateway's parts wired together, started and stopped with the HTTP app."""

from __future__ import annotations

import logging

from cortex.services.gateway.activity import RequestBoard
from cortex.services.gateway.hub import EventHub
from cortex.services.gateway.metrics import GatewayMetrics
from cortex.services.gateway.neuron_client import NeuronPool
from cortex.services.gateway.responses import ResponseStore
from cortex.services.gateway.scheduler import Scheduler
from cortex.services.gateway.settings import Settings
from cortex.services.gateway.store import StateStore
from cortex.services.gateway.watch import Watch

log = logging.getLogger("cortex.gateway")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        config = settings.config
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.hub = EventHub()
        self.requests = RequestBoard(self.hub)
        self.store = StateStore(settings.state_path)
        self.pool = NeuronPool(config.neurons, config.gateway, config.auth.neuron_token)
        self.scheduler = Scheduler(settings, self.store, self.hub, self.metrics, self.pool)
        self.watch = Watch(self.pool, self.scheduler, config)
        assert settings.responses_path is not None
        self.responses = ResponseStore(
            settings.responses_path,
            max_age_s=config.gateway.responses_max_age_days * 86400,
            max_count=config.gateway.responses_max_count,
        )

    async def start(self) -> None:
        self.scheduler.start()
        self.watch.start()
        self.requests.start()
        names = ", ".join(f"{n.name}={n.endpoint}" for n in self.settings.config.neurons)
        log.info(
            "gateway started: neurons %s; models file %s; state %s; stored responses %s",
            names or "none",
            self.settings.models_path or "none",
            self.settings.state_path,
            self.responses.path,
        )

    async def stop(self) -> None:
        await self.requests.stop()
        await self.watch.stop()
        await self.scheduler.stop()
        await self.pool.aclose()
        self.responses.close()
