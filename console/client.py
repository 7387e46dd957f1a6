"""HTTP client for the gateway's fleet API, sync (``--json``) and async (the TUI).

No Textual here, and httpx only for the TUI's async client: ``cortex-console --json``
imports this, msgspec and the standard library's HTTP client (:mod:`transport`).
Every failure becomes a :class:`GatewayError` carrying the gateway's own message (from
its OpenAI-style error envelope) or, when it cannot be reached, one that says so.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import msgspec

from cortex.common.fleet import (
    ActionResult,
    CatalogueUpdate,
    FleetEvent,
    FleetSnapshot,
    LoadAction,
    LogEntry,
    LogEvent,
    NeuronUpdate,
    PlacementRemoved,
    PlacementUpdate,
    ReplicasAction,
    RequestsUpdate,
    SnapshotEvent,
    UnloadAction,
)
from cortex.console.transport import Reply, Transport, TransportError

if TYPE_CHECKING:
    import httpx

    Response = httpx.Response | Reply

Action = Literal["load", "unload", "pin", "unpin"]
ACTIONS: tuple[Action, ...] = ("load", "unload", "pin", "unpin")

# Fleet events by SSE `event:` name; an event the console does not know is skipped, so
# a newer gateway can add kinds without breaking an older console.
EVENT_TYPES: dict[str, type] = {
    "snapshot": SnapshotEvent,
    "neuron": NeuronUpdate,
    "placement": PlacementUpdate,
    "placement_removed": PlacementRemoved,
    "catalogue": CatalogueUpdate,
    "log": LogEvent,
    "requests": RequestsUpdate,
}
# Made on first use: ``--json`` decodes no events, and each decoder costs at start.
_EVENT_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}


class GatewayError(Exception):
    """The gateway refused (``status`` set) or could not be reached (``status`` None)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str = "gateway_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code

    def to_json(self) -> dict[str, Any]:
        """The error document ``--json`` prints on stderr: OpenAI's envelope plus status."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "status": self.status,
            }
        }


def normalize_url(url: str) -> str:
    """``host:port`` and ``:port`` become ``http://...``; a trailing slash goes."""
    url = url.strip()
    if url.startswith(":"):
        url = "127.0.0.1" + url
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def action_request(
    action: Action, model: str, neuron: str | None, *, wait: bool = True, force: bool = False
) -> tuple[str, dict[str, str], bytes]:
    """Path, query and JSON body of ``POST /fleet/models/{model}/{action}``.

    ``wait=False`` (load): the gateway answers once the load has started, and its
    progress follows on the event stream. ``force`` (unload): even with requests in
    flight, which then fail.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if not model:
        raise ValueError("a model id is required")
    path = f"/fleet/models/{quote(model, safe='')}/{action}"
    params: dict[str, str] = {}
    if action == "load":
        body: Any = LoadAction(neuron=neuron)
        if not wait:
            params["wait"] = "false"
    elif action == "unload":
        body = UnloadAction(neuron=neuron)
        if force:
            params["force"] = "true"
    else:
        body = {}
    return path, params, msgspec.json.encode(body)


def replicas_request(model: str, low: int, high: int) -> tuple[str, bytes]:
    """Path and JSON body of ``POST /fleet/models/{model}/replicas``."""
    if not model:
        raise ValueError("a model id is required")
    body = msgspec.json.encode(ReplicasAction(min=low, max=high))
    return f"/fleet/models/{quote(model, safe='')}/replicas", body


def _httpx():
    """httpx, imported when the TUI first needs it, without its own command-line tool.

    ``import httpx`` also imports its CLI (click, rich, pygments) for nothing. A
    ``None`` in ``sys.modules`` makes that one import fail, and httpx falls back to a
    stub by design (``except ImportError``).
    """
    if "httpx" not in sys.modules:
        sys.modules["httpx._main"] = None
        try:
            import httpx  # noqa: F401
        finally:
            del sys.modules["httpx._main"]
    return sys.modules["httpx"]


def _path(response: Response) -> str:
    return response.path if isinstance(response, Reply) else response.request.url.path


def _replicas_result(response: Response) -> ActionResult:
    """The answer to a replicas request; a gateway from before replicas says it has none."""
    if response.status_code in (404, 405):
        error = error_from_response(response)
        if error.code in (None, "not_found", "method_not_allowed"):
            raise GatewayError(
                f"this gateway has no replicas API (POST {_path(response)} "
                f"answered {response.status_code}); it is older than this console",
                status=response.status_code,
                type=error.type,
                code="replicas_unsupported",
            )
    return _parse_result(response)


def error_from_response(response: Response) -> GatewayError:
    """The gateway's message from its error envelope, or a description of what came back."""
    status = response.status_code
    try:
        detail = msgspec.json.decode(response.content).get("error")
    except (msgspec.DecodeError, AttributeError):
        detail = None
    if isinstance(detail, dict) and detail.get("message"):
        message = str(detail["message"])
        kind = str(detail.get("type") or "gateway_error")
        code = detail.get("code")
    elif isinstance(detail, str):
        message, kind, code = detail, "gateway_error", None
    else:
        body = response.text.strip().replace("\n", " ")[:200]
        message = f"the gateway answered {status} {response.reason_phrase}" + (
            f": {body}" if body else ""
        )
        kind, code = "gateway_error", None
    if status == 401 and "--token" not in message:
        message += " (pass the admin token with --token or CORTEX_TOKEN)"
    return GatewayError(message, status=status, type=kind, code=code)


def error_from_exception(base_url: str, exc: Exception) -> GatewayError:
    """The error for an httpx failure or a :class:`TransportError`."""
    if isinstance(exc, TransportError):
        kind, reason = exc.kind, exc.reason
    else:
        httpx = _httpx()
        reason = describe(exc)
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            kind = "connect"
        elif isinstance(exc, httpx.TimeoutException):
            kind = "timeout"
        else:
            kind = "broken"
    if kind == "connect":
        return GatewayError(
            f"cannot reach the gateway at {base_url}: {reason}. Is cortex-gateway "
            "running there? Point the console at it with --gateway URL or CORTEX_GATEWAY.",
            type="connection_error",
            code="gateway_unreachable",
        )
    if kind == "timeout":
        return GatewayError(
            f"the gateway at {base_url} did not answer in time ({reason})",
            type="timeout_error",
            code="gateway_timeout",
        )
    return GatewayError(
        f"talking to the gateway at {base_url} failed: {reason}",
        type="connection_error",
        code="gateway_unreachable",
    )


def describe(exc: BaseException) -> str:
    """A one-line reason, digging through httpx's wrapping for the OS error."""
    text = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    while not text and cause is not None:
        text = str(cause).strip()
        cause = cause.__cause__ or cause.__context__
    return text or type(exc).__name__


def decode_event(name: str, data: str) -> FleetEvent | None:
    decoder = _EVENT_DECODERS.get(name)
    if decoder is None:
        event_type = EVENT_TYPES.get(name)
        if event_type is None:
            return None
        decoder = _EVENT_DECODERS[name] = msgspec.json.Decoder(event_type)
    return decoder.decode(data)


def _headers(token: str | None) -> dict[str, str]:
    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def _timeout(seconds: float) -> httpx.Timeout:
    return _httpx().Timeout(seconds, connect=min(3.0, seconds))


def _parse(response: Response, type_: type) -> Any:
    if response.is_error:
        raise error_from_response(response)
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise GatewayError(
            f"the gateway's answer to {_path(response)} is not what this console "
            f"expects ({exc}); are the gateway and console versions the same?",
            status=response.status_code,
            type="protocol_error",
            code="bad_response",
        ) from None


def _parse_result(response: Response) -> ActionResult:
    """An action's answer; a refusal that still carries an ActionResult is a result."""
    if response.is_error:
        try:
            return msgspec.json.decode(response.content, type=ActionResult)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise error_from_response(response) from None
    return _parse(response, ActionResult)


class FleetClient:
    """Blocking client for scripts: one call, one answer."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = normalize_url(base_url)
        self._http = Transport(self.base_url, _headers(token), timeout)

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def snapshot(self) -> FleetSnapshot:
        return _parse(self._send("GET", "/fleet"), FleetSnapshot)

    def act(
        self,
        action: Action,
        model: str,
        neuron: str | None = None,
        *,
        wait: bool = True,
        force: bool = False,
    ) -> ActionResult:
        path, params, body = action_request(action, model, neuron, wait=wait, force=force)
        headers = {"content-type": "application/json"}
        response = self._send("POST", path, params=params, content=body, headers=headers)
        return _parse_result(response)

    def set_replicas(self, model: str, low: int, high: int) -> ActionResult:
        """``POST /fleet/models/{model}/replicas``: keep ``low`` to ``high`` replicas."""
        path, body = replicas_request(model, low, high)
        headers = {"content-type": "application/json"}
        return _replicas_result(self._send("POST", path, content=body, headers=headers))

    def _send(self, method: str, path: str, **kwargs: Any) -> Reply:
        try:
            return self._http.request(method, path, **kwargs)
        except TransportError as exc:
            raise error_from_exception(self.base_url, exc) from None


class AsyncFleetClient:
    """Non-blocking client for the TUI: actions and the event stream."""

    def __init__(
        self, base_url: str, token: str | None = None, action_timeout: float = 900.0
    ) -> None:
        self.base_url = normalize_url(base_url)
        httpx = _httpx()
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(token), timeout=_timeout(action_timeout)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def snapshot(self) -> FleetSnapshot:
        return _parse(await self._send("GET", "/fleet"), FleetSnapshot)

    async def act(
        self,
        action: Action,
        model: str,
        neuron: str | None = None,
        *,
        wait: bool = True,
        force: bool = False,
    ) -> ActionResult:
        path, params, body = action_request(action, model, neuron, wait=wait, force=force)
        headers = {"content-type": "application/json"}
        response = await self._send("POST", path, params=params, content=body, headers=headers)
        return _parse_result(response)

    async def set_replicas(self, model: str, low: int, high: int) -> ActionResult:
        """Keep ``low`` to ``high`` replicas of ``model`` (the gateway saves it)."""
        path, body = replicas_request(model, low, high)
        headers = {"content-type": "application/json"}
        return _replicas_result(await self._send("POST", path, content=body, headers=headers))

    async def recent_logs(self) -> list[LogEntry]:
        """The gateway's recent log entries (``GET /fleet/logs``): what happened before
        the console connected. An empty list from a gateway that does not offer it."""
        response = await self._send("GET", "/fleet/logs", timeout=_timeout(5.0))
        if response.status_code in (404, 405):
            return []
        return _parse(response, list[LogEntry])

    async def events(self, read_timeout: float | None = None) -> AsyncIterator[FleetEvent]:
        """``GET /fleet/events`` as decoded events until the stream ends or fails.

        Raises :class:`GatewayError` for a refusal or a broken connection; returns when
        the gateway closes the stream cleanly.
        """
        from cortex.common.sse import aiter_events  # the TUI's only: not on the --json path

        httpx = _httpx()
        timeout = httpx.Timeout(connect=3.0, read=read_timeout, write=10.0, pool=3.0)
        headers = {"accept": "text/event-stream"}
        try:
            async with self._http.stream(
                "GET", "/fleet/events", headers=headers, timeout=timeout
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response)
                async for sse in aiter_events(response.aiter_bytes()):
                    try:
                        event = decode_event(sse.event, sse.data)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        raise GatewayError(
                            f"the gateway sent a {sse.event!r} event this console cannot "
                            f"read ({exc}); are the gateway and console versions the same?",
                            type="protocol_error",
                            code="bad_event",
                        ) from None
                    if event is not None:
                        yield event
        except httpx.HTTPError as exc:
            raise error_from_exception(self.base_url, exc) from None

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except _httpx().HTTPError as exc:
            raise error_from_exception(self.base_url, exc) from None
