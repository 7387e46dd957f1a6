"""HTTP clients for one neuron: control calls (status, load, unload, tokenize, events) and the
inference proxy, each on its own connection pool so a saturated proxy never delays a
health check.

Timeouts: connecting is short (a neuron that does not accept within
``gateway.connect_timeout_s`` is treated as down); reading is long
(``gateway.read_timeout_s``) because a load or a long prefill is silent until done.
"""

from __future__ import annotations

import httpx
import msgspec

from cortex.common.config import GatewaySection, NeuronEndpoint
from cortex.common.errors import CortexError
from cortex.common.neuron import (
    LoadedModel,
    LoadRequest,
    NodeStatus,
    TokenizeRequest,
    TokenizeResponse,
    UnloadRequest,
)
from cortex.services.gateway.anthropic import error_from_openai
from cortex.services.gateway.upstream import (
    UpstreamBroken,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)

_encoder = msgspec.json.Encoder()


class NeuronUnreachable(Exception):
    """The neuron could not be reached, or dropped the connection before answering."""

    def __init__(self, neuron: str, endpoint: str, cause: BaseException) -> None:
        detail = str(cause) or type(cause).__name__
        super().__init__(f"neuron '{neuron}' at {endpoint} is unreachable ({detail})")
        self.neuron = neuron


class NeuronClient:
    def __init__(self, endpoint: NeuronEndpoint, section: GatewaySection, token: str) -> None:
        self.name = endpoint.name
        self.endpoint = endpoint.endpoint
        token = endpoint.token or token
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        url = httpx.URL(self.endpoint)
        self.upstream = UpstreamPool(
            url.host,
            url.port or (443 if url.scheme == "https" else 80),
            connect_timeout=section.connect_timeout_s,
            read_timeout=section.read_timeout_s,
            tls=url.scheme == "https",
        )
        self._path_prefix = url.path.rstrip("/")
        self.control = httpx.AsyncClient(
            base_url=self.endpoint,
            headers=self.headers,
            timeout=httpx.Timeout(
                connect=section.connect_timeout_s,
                read=max(section.read_timeout_s, section.load_timeout_s),
                write=30.0,
                pool=30.0,
            ),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )

    async def aclose(self) -> None:
        self.upstream.close()
        await self.control.aclose()

    # ------------------------------------------------------------------ control

    async def _call(
        self, method: str, path: str, body: msgspec.Struct | None = None, limit_s=None
    ) -> bytes:
        kwargs = {}
        if limit_s is not None:
            kwargs["timeout"] = limit_s
        try:
            response = await self.control.request(
                method,
                path,
                content=_encoder.encode(body) if body is not None else None,
                headers={"content-type": "application/json"} if body is not None else None,
                **kwargs,
            )
        except httpx.TimeoutException as exc:
            raise CortexError(
                504, f"Neuron '{self.name}' did not answer {method} {path} in time ({exc})."
            ) from None
        except httpx.HTTPError as exc:
            raise CortexError(
                503, str(NeuronUnreachable(self.name, self.endpoint, exc)), code="neuron_down"
            ) from None
        if response.status_code >= 400:
            error = error_from_openai(response.status_code, response.content)
            if response.status_code == 401:
                error.message = (
                    f"Neuron '{self.name}' refused the gateway's token: set auth.neuron_token "
                    f"(or the neuron's `token` in cortex.toml) to the neuron's token. "
                    f"({error.message})"
                )
            raise error
        return response.content

    async def status(self, limit_s: float | None = None) -> NodeStatus:
        data = await self._call("GET", "/status", limit_s=limit_s)
        return msgspec.json.decode(data, type=NodeStatus)

    async def load(self, request: LoadRequest) -> LoadedModel:
        data = await self._call("POST", "/models/load", request)
        return msgspec.json.decode(data, type=LoadedModel)

    async def unload(self, model: str) -> None:
        await self._call("POST", "/models/unload", UnloadRequest(model=model))

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        data = await self._call("POST", "/tokenize", request)
        return msgspec.json.decode(data, type=TokenizeResponse)

    # ------------------------------------------------------------------ proxy

    async def open(self, path: str, body: bytes, headers: dict[str, str]) -> UpstreamResponse:
        """Send an inference request; return once the response head has arrived.

        Raises :class:`NeuronUnreachable` when nothing was answered (retry elsewhere), a
        CortexError when the neuron was silent too long (504) or answered garbage (502).
        """
        try:
            return await self.upstream.request(
                "POST", self._path_prefix + path, {**self.headers, **headers}, body
            )
        except UpstreamUnreachable as exc:
            raise NeuronUnreachable(self.name, self.endpoint, exc) from None
        except UpstreamTimeout as exc:
            raise CortexError(
                504, f"Neuron '{self.name}' did not answer: {exc}.", code="upstream_timeout"
            ) from None
        except UpstreamBroken as exc:
            raise CortexError(
                502, f"Neuron '{self.name}' answered badly: {exc}.", code="upstream_failed"
            ) from None


class NeuronPool:
    """The clients of every configured neuron; also the scheduler's effects."""

    def __init__(self, neurons: list[NeuronEndpoint], section: GatewaySection, token: str):
        self.clients = {n.name: NeuronClient(n, section, token) for n in neurons}

    def __getitem__(self, name: str) -> NeuronClient:
        return self.clients[name]

    async def load(self, neuron: str, request: LoadRequest) -> LoadedModel:
        return await self.clients[neuron].load(request)

    async def unload(self, neuron: str, model: str) -> None:
        await self.clients[neuron].unload(model)

    def abort(self, neuron: str, reason: str) -> None:
        self.clients[neuron].upstream.abort(reason)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
