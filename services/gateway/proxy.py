"""Getting a request to a neuron and its answer back, measured on the way.

* :func:`obtain` turns a scheduler ticket into an open upstream response: it waits for a
  cold load if needed (yielding keepalives for streams meanwhile), opens the request, and
  when the neuron is unreachable before answering marks it down and retries once on
  another neuron that can serve the model (which may mean a cold load there).
* :class:`Meter` reads the bytes going by without parsing every event: it takes usage,
  TTFT and decode rate from the neuron's own figures in the last chunks (``usage``,
  ``timings``); for a neuron that sends none, it sniffs the first token's arrival and
  counts events instead.
* :func:`relay` streams the upstream bytes to the client unchanged; a client that leaves
  closes the upstream connection (the neuron then cancels); a neuron that dies mid-stream
  ends the client's stream with an error event in its dialect instead of a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import msgspec

from cortex.common.errors import CortexError
from cortex.common.openai import Timings, Usage
from cortex.services.gateway import access_log
from cortex.services.gateway.affinity import Prefix
from cortex.services.gateway.anthropic import error_from_openai
from cortex.services.gateway.neuron_client import NeuronUnreachable
from cortex.services.gateway.plumbing import CLAMPED_HEADER, ClientGone, unless_client_leaves
from cortex.services.gateway.state import Lease, Waiter
from cortex.services.gateway.upstream import UpstreamError, UpstreamResponse

# The first chunk carrying generated output (not the role-only opening chunk).
_FIRST_TOKEN = re.compile(rb'"(?:content|reasoning_content|text)":"(?!")|"tool_calls":\[')
_DONE = b"data: [DONE]"


class _Figures(msgspec.Struct):
    usage: Usage | None = None
    timings: Timings | None = None


_figures = msgspec.json.Decoder(_Figures)


class Meter:
    """What one request cost, measured at the gateway; listed on the gateway's request
    board (the fleet stream's ``requests`` event) until it reports."""

    __slots__ = (
        "__weakref__",
        "endpoint",
        "events",
        "first_token_at",
        "gateway",
        "model",
        "neuron",
        "reported",
        "request_id",
        "route",
        "started",
        "tail",
    )

    def __init__(
        self, gateway, model: str, endpoint: str, started: float, request_id: str = ""
    ) -> None:
        self.gateway = gateway
        self.request_id = request_id
        self.model = model
        self.endpoint = endpoint
        self.started = started
        self.first_token_at: float | None = None
        self.events = 0
        self.tail: deque[bytes] = deque(maxlen=4)
        self.reported = False
        self.route = ""  # how the scheduler chose its placement (affinity.choose)
        self.neuron = ""  # the neuron serving it, once it holds a lease
        gateway.requests.track(self)

    def feed(self, chunk: bytes) -> None:
        if self.first_token_at is None and _FIRST_TOKEN.search(chunk):
            self.first_token_at = time.perf_counter()
        self.events += chunk.count(b"data:")
        self.tail.append(chunk)

    @property
    def saw_done(self) -> bool:
        return _DONE in b"".join(self.tail)[-64:]

    def _stream_figures(self) -> _Figures:
        """The neuron's usage and timings from the last events (usage may come in its own)."""
        found = _Figures()
        events = b"".join(self.tail).split(b"\n\n")
        for raw in reversed(events):
            raw = raw.strip()
            if not raw.startswith(b"data: {") or (
                b'"usage"' not in raw and b'"timings"' not in raw
            ):
                continue
            try:
                figures = _figures.decode(raw[6:])
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            found.usage = found.usage or figures.usage
            found.timings = found.timings or figures.timings
            if found.usage is not None and found.timings is not None:
                break
        return found

    def report(self, status: int, neuron: str = "", body: bytes | None = None) -> None:
        """Record the request in metrics and the log (one line, with its id), once."""
        if self.reported:
            return
        self.reported = True
        self.gateway.requests.done(self)
        end = time.perf_counter()
        figures = _Figures()
        if body is not None:
            if status == 200:
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    figures = _figures.decode(body)
        elif self.tail:
            figures = self._stream_figures()
        prompt = completion = 0
        rate = None
        ttft = None
        if figures.usage is not None:
            prompt, completion = figures.usage.prompt_tokens, figures.usage.completion_tokens
        if figures.timings is not None:
            timings = figures.timings
            prompt = prompt or timings.prompt_tokens
            completion = completion or timings.completion_tokens
            rate = timings.decode_tokens_per_s or None
        if figures.timings is not None and figures.timings.ttft_ms:
            # The neuron's own first token, seen from here: all but its time after that token.
            decode_s = (figures.timings.total_ms - figures.timings.ttft_ms) / 1000
            ttft = max(0.0, end - self.started - decode_s)
        elif body is None and self.first_token_at is not None:
            ttft = self.first_token_at - self.started  # a neuron without timings: sniffed
        if body is None and self.first_token_at is not None:
            if not completion:
                completion = max(0, self.events - 2)  # role chunk and [DONE] carry no token
            if rate is None and completion > 1 and end > self.first_token_at:
                rate = (completion - 1) / (end - self.first_token_at)
        self.gateway.metrics.observe_request(
            model=self.model,
            neuron=neuron,
            endpoint=self.endpoint,
            status=status,
            seconds=end - self.started,
            ttft=ttft,
            prompt_tokens=prompt,
            completion_tokens=completion,
            decode_rate=rate,
        )
        ttft_ms = f"{ttft * 1000:.1f}" if ttft is not None else "-"
        access_log.measured(
            model=self.model,
            neuron=neuron,
            status=status,
            figures=f"endpoint={self.endpoint} prompt={prompt} completion={completion} "
            f"ttft_ms={ttft_ms} route={self.route or '-'}",
            request_id=self.request_id,
        )


@dataclass(frozen=True, slots=True)
class Exchange:
    """A client's request on its way to a neuron, and the meter that measures it."""

    path: str
    body: bytes
    headers: dict[str, str]
    meter: Meter
    # Headers of the neuron's answer the client sees too (the clamped max_tokens); filled
    # when the neuron answers, so a stream that waited for a load has none of them.
    reply_headers: dict[str, str] = field(default_factory=dict)


class Upstream:
    """A request's hold on the fleet, from admission to the end of its answer; the one
    owner of its lease.

    It holds, in turn, the request's place in the scheduler's queue (a Waiter), its
    lease, and the open upstream response. :meth:`close` gives back whatever it holds and
    may be called any number of times. :func:`admit` makes one; the function it is handed
    to (:func:`fetch_whole`, :func:`open_stream` and the stream it returns) closes it on
    every path: answer, refusal, timeout, a neuron gone, the client gone.
    """

    __slots__ = (
        "closed",
        "lease",
        "model",
        "prefix",
        "request_id",
        "response",
        "scheduler",
        "waiter",
    )

    def __init__(
        self, scheduler, model: str, request_id: str, prefix: Prefix | None = None
    ) -> None:
        self.scheduler = scheduler
        self.model = model
        self.request_id = request_id
        self.prefix = prefix  # its conversation's prefix, for affinity (a retry too)
        self.waiter: Waiter | None = None
        self.lease: Lease | None = None
        self.response: UpstreamResponse | None = None
        self.closed = False

    def hold(self, ticket: Lease | Waiter) -> None:
        """Take a scheduler decision: a lease now, or a place in the model's queue."""
        if isinstance(ticket, Waiter):
            self.waiter = ticket
        else:
            self.lease = ticket

    def granted(self, lease: Lease) -> None:
        """The queued request got its lease."""
        assert self.waiter is not None
        self.waiter.consumed = True
        self.waiter, self.lease = None, lease

    def give_back(self) -> None:
        """Close the response and release the lease now (a retry elsewhere follows)."""
        response, self.response = self.response, None
        if response is not None:
            response.close()
        lease, self.lease = self.lease, None
        if lease is not None:
            self.scheduler.release(lease)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.give_back()
        finally:
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.consumed:
                self.scheduler.abandon(waiter)


async def decide(
    gateway, model: str, request_id: str, exclude=frozenset(), prefix: Prefix | None = None
) -> Lease | Waiter:
    """Ask the scheduler; a Lease now, a queued Waiter, or a CortexError (503, 404...)."""
    waiter = gateway.scheduler.acquire(model, request_id, exclude, prefix)
    try:
        decision = await waiter.decision
    except asyncio.CancelledError:
        gateway.scheduler.abandon(waiter)
        raise
    if decision is None:
        return waiter
    waiter.consumed = True
    return decision


async def admit(
    gateway, model: str, request_id: str, meter: Meter, prefix: Prefix | None = None
) -> Upstream:
    """:func:`decide` for a client's request, as the :class:`Upstream` that owns the
    outcome; a refusal is reported on ``meter`` and raised. ``prefix`` (affinity.py)
    steers it to the placement that served its conversation."""
    upstream = Upstream(gateway.scheduler, model, request_id, prefix)
    try:
        upstream.hold(await decide(gateway, model, request_id, prefix=prefix))
    except CortexError as exc:
        meter.report(exc.status)
        raise
    return upstream


async def _wait(
    gateway, upstream: Upstream, deadline: float, keepalive: Callable[[], bytes] | None
) -> AsyncIterator[bytes]:
    """Wait for the queued request's lease, yielding keepalives; the queue place stays
    with ``upstream`` (its owner gives it back if this ends early)."""
    waiter = upstream.waiter
    assert waiter is not None
    interval = gateway.settings.config.gateway.keepalive_interval_s
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            timeout = gateway.settings.config.gateway.load_timeout_s
            raise CortexError(
                503,
                f"Model '{waiter.model}' was not ready within {timeout:.0f}s "
                "(gateway.load_timeout_s); it may still be loading: retry shortly, or "
                "check GET /fleet for its state.",
                code="model_load_timeout",
                retry_after=5,
            )
        step = min(remaining, interval) if keepalive is not None else remaining
        done, _ = await asyncio.wait({waiter.granted}, timeout=step)
        if done:
            upstream.granted(waiter.granted.result())  # raises the scheduler's CortexError
            return
        if keepalive is not None:
            yield keepalive()


async def obtain(
    gateway,
    upstream: Upstream,
    exchange: Exchange,
    keepalive: Callable[[], bytes] | None = None,
) -> AsyncIterator[bytes]:
    """Wait (yielding keepalives), open; retry once elsewhere if the neuron is gone.

    On return ``upstream`` holds the lease and the response (whatever its status).
    Raises CortexError when the model cannot be served; what ``upstream`` holds stays
    for its owner to close.
    """
    deadline = exchange.meter.started + gateway.settings.config.gateway.load_timeout_s
    exclude: frozenset[str] = frozenset()
    for attempt in (1, 2):
        if upstream.waiter is not None:
            async for ping in _wait(gateway, upstream, deadline, keepalive):
                yield ping
        lease = upstream.lease
        assert lease is not None
        exchange.meter.route = lease.route
        exchange.meter.neuron = lease.neuron
        try:
            upstream.response = await gateway.pool[lease.neuron].open(
                exchange.path, exchange.body, exchange.headers
            )
            clamped = upstream.response.header(CLAMPED_HEADER.encode())
            if clamped is not None:
                exchange.reply_headers[CLAMPED_HEADER] = clamped.decode("latin-1")
            return
        except NeuronUnreachable as exc:
            upstream.give_back()
            gateway.scheduler.neuron_unhealthy(lease.neuron, str(exc), definitive=True)
            if attempt == 2:
                raise CortexError(
                    503,
                    f"Model '{upstream.model}' could not be served: {exc}, and the retry "
                    "failed too. Check the neurons (GET /fleet).",
                    code="neuron_unreachable",
                ) from None
            gateway.metrics.retries.labels(lease.neuron).inc()
            exclude = exclude | {lease.neuron}
            upstream.hold(
                await decide(gateway, upstream.model, upstream.request_id, exclude, upstream.prefix)
            )


async def refusal(gateway, upstream: Upstream, meter: Meter) -> CortexError:
    """The error for a neuron's non-200 answer; closes ``upstream`` (lease freed)."""
    response, lease = upstream.response, upstream.lease
    assert response is not None and lease is not None
    try:
        data = await response.aread()
    except UpstreamError:
        data = b""
    finally:
        upstream.close()
    meter.report(response.status_code, lease.neuron)
    return error_from_openai(response.status_code, data)


@dataclass(frozen=True, slots=True)
class StreamDialect:
    """How a client's stream speaks: a keepalive, an error event, and the answer relayed
    from an open upstream response."""

    keepalive: Callable[[], bytes]
    fail: Callable[[CortexError], bytes]
    answer: Callable[[Upstream], AsyncIterator[bytes]]


class OwnedStream:
    """The client's stream, owning the request's :class:`Upstream`.

    However the stream ends, and also when it is never read (the client left before the
    response started, so the server never iterates it), :meth:`aclose` gives the lease
    back: routes pass it to the response as its background task (``sse_response``).
    """

    __slots__ = ("_body", "_closed", "_meter", "_upstream")

    def __init__(self, body: AsyncIterator[bytes], upstream: Upstream, meter: Meter) -> None:
        self._body = body
        self._upstream = upstream
        self._meter = meter
        self._closed = False

    def __aiter__(self) -> OwnedStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._body.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._body, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._upstream.close()
            self._meter.report(499)  # no-op when the stream reported how it ended


async def open_stream(
    gateway, upstream: Upstream, exchange: Exchange, dialect: StreamDialect, request=None
) -> OwnedStream:
    """The client's stream. A loaded model's neuron is asked first, so its refusal is
    raised before any byte goes out (and a client that leaves meanwhile, when
    ``request`` is given, ends it); a model that is not ready gets
    :func:`waiting_stream`. Takes ownership of ``upstream``."""
    meter = exchange.meter
    if upstream.waiter is not None:
        return OwnedStream(waiting_stream(gateway, upstream, exchange, dialect), upstream, meter)

    async def head() -> None:
        async for _ in obtain(gateway, upstream, exchange):
            pass

    try:
        if request is not None:
            await unless_client_leaves(request, head())
        else:
            await head()
        assert upstream.response is not None
        if upstream.response.status_code != 200:
            raise await refusal(gateway, upstream, meter)
    except CortexError as exc:
        upstream.close()
        meter.report(exc.status)
        raise
    except BaseException:
        upstream.close()
        meter.report(499)
        raise
    return OwnedStream(dialect.answer(upstream), upstream, meter)


async def waiting_stream(
    gateway, upstream: Upstream, exchange: Exchange, dialect: StreamDialect
) -> AsyncIterator[bytes]:
    """A stream whose model is not ready: 200 and keepalives at once, then the answer.

    Anything that goes wrong after the 200 is an error event in the client's dialect.
    """
    meter = exchange.meter
    try:
        async for ping in obtain(gateway, upstream, exchange, dialect.keepalive):
            yield ping
    except CortexError as exc:
        upstream.close()
        meter.report(exc.status)
        access_log.note(reason=exc.message)
        yield dialect.fail(exc)
        return
    assert upstream.response is not None
    if upstream.response.status_code != 200:
        error = await refusal(gateway, upstream, meter)
        access_log.note(reason=error.message)
        yield dialect.fail(error)
        return
    async for chunk in dialect.answer(upstream):
        yield chunk


async def fetch_whole(
    request, gateway, upstream: Upstream, exchange: Exchange
) -> tuple[bytes, str]:
    """A non-stream exchange: wait, send, read the whole answer (body, neuron).

    A neuron's error answer is raised as a CortexError. Cancelled when the client hangs
    up (ClientGone); reported on the meter either way. Takes ownership of ``upstream``.
    """
    meter = exchange.meter

    async def work() -> tuple[int, bytes, str]:
        async for _ in obtain(gateway, upstream, exchange):
            pass
        response, lease = upstream.response, upstream.lease
        assert response is not None and lease is not None
        try:
            data = await response.aread()
        except UpstreamError as exc:
            raise CortexError(
                502,
                f"Neuron '{lease.neuron}' failed before finishing the answer "
                f"({exc or type(exc).__name__}). Retry the request.",
                code="upstream_failed",
            ) from None
        return response.status_code, data, lease.neuron

    try:
        status, data, neuron = await unless_client_leaves(request, work())
    except ClientGone:
        meter.report(499)
        raise
    except CortexError as exc:
        meter.report(exc.status)
        raise
    finally:
        upstream.close()
    meter.report(status, neuron, body=data)
    if status != 200:
        raise error_from_openai(status, data)
    return data, neuron


def _whole_events(data: bytes) -> tuple[bytes, bytes]:
    """``data`` split after its last complete SSE event: (whole events, the rest)."""
    end = data.rfind(b"\n\n")
    return (data[: end + 2], data[end + 2 :]) if end >= 0 else (b"", data)


async def relay(
    gateway,
    upstream: Upstream,
    meter: Meter,
    *,
    translate: Callable[[bytes], bytes] | None = None,
    finish: Callable[[], bytes] | None = None,
    fail: Callable[[CortexError], bytes],
) -> AsyncIterator[bytes]:
    """Stream the upstream body to the client; release the lease and measure at the end.

    ``translate`` rewrites each chunk (Anthropic); by default bytes pass unchanged.
    ``finish`` gives the bytes that close a translated stream. ``fail`` renders an error
    event in the client's dialect.
    """
    response, lease = upstream.response, upstream.lease
    assert response is not None and lease is not None
    status = 200
    partial = b""  # an event not yet whole: held, so an error event never splices into it
    try:
        async for chunk in response.aiter_raw():
            meter.feed(chunk)
            if translate is not None:
                data = translate(chunk)
            elif not partial and chunk.endswith(b"\n\n"):
                data = chunk  # the usual case: the neuron writes whole events
            else:
                data, partial = _whole_events(partial + chunk)
            if data:
                yield data
        if meter.saw_done and partial:
            yield partial
        if finish is not None:
            tail = finish()
            if tail:
                yield tail
        elif not meter.saw_done:
            status = 502
            yield _failed(
                fail,
                f"Neuron '{lease.neuron}' ended the stream before it finished; the answer "
                "is incomplete.",
                "upstream_incomplete",
            )
    except UpstreamError as exc:
        status = 502
        yield _failed(
            fail,
            f"Neuron '{lease.neuron}' failed mid-stream ({exc or type(exc).__name__}); "
            "the answer is incomplete. Retry the request.",
            "upstream_failed",
        )
    except (asyncio.CancelledError, GeneratorExit):
        # The client left; closing the upstream below cancels the neuron. After [DONE]
        # the answer was whole (LangChain closes right then): that is a 200.
        if not meter.saw_done:
            status = 499
        raise
    finally:
        upstream.close()
        meter.report(status, lease.neuron)


def _failed(fail: Callable[[CortexError], bytes], message: str, code: str) -> bytes:
    """The error event ending a stream the neuron broke (a 502), its reason logged."""
    access_log.note(reason=message)
    return fail(CortexError(502, message, code=code))
