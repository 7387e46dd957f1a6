"""The worker process: load one model, then serve requests from the supervisor's pipe.

Three threads. The reader (main thread) decodes frames from stdin and applies
cancellations at once; a preparing thread (``intake``) validates requests, renders the
template, tokenises, checks the context and queues them, and answers tokenize calls.
The engine thread alone touches the engine:
it admits queued jobs FIFO up to the engine's concurrency, steps the engine, pushes each
new token id through the job's token pipeline and writes the events back. A pipe EOF
(the supervisor died or unloads) ends the process, which is what returns its memory.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, BinaryIO, Protocol

import msgspec

from cortex.services.neuron.worker import protocol as p

if TYPE_CHECKING:
    from cortex.services.neuron.worker.prepare import Job

log = logging.getLogger("cortex.neuron.worker")


class Reader(Protocol):
    """What frames are read from: the pipe, or ``_Exact`` over it."""

    def read(self, n: int, /) -> bytes: ...


SEND_INTERVAL_S = 0.002  # bound on how long a decoded token waits to be sent


class FrameWriter:
    """Frames to the supervisor; both threads write, so whole frames go under a lock."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: msgspec.Struct) -> None:
        frame = p.encode_frame(message)
        with self._lock:
            self._stream.write(frame)
            self._stream.flush()


def read_frame(stream: Reader) -> p.ToWorker | None:
    header = stream.read(p.HEADER.size)
    if len(header) < p.HEADER.size:
        return None
    payload = stream.read(p.frame_length(header))
    return p.decode_to_worker(payload)


class EngineLoop:
    """The engine thread: FIFO admission, stepping, decoding, sending."""

    def __init__(self, engine, out: FrameWriter, max_concurrency: int) -> None:
        self.engine = engine
        self.out = out
        self.max_concurrency = max_concurrency
        self.pending: collections.deque = collections.deque()
        self.running: dict[str, Job] = {}
        self.cancelled: set[str] = set()
        self.wake = threading.Condition()
        self.stopping = False

    # called from the reader thread ---------------------------------------------

    def submit(self, job) -> None:
        with self.wake:
            self.pending.append(job)
            self.wake.notify()

    def cancel(self, rid: str) -> None:
        with self.wake:
            self.cancelled.add(rid)
            self.wake.notify()

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()

    # the engine thread ----------------------------------------------------------

    def run(self) -> None:
        while True:
            with self.wake:
                while (
                    not self.stopping
                    and not self.pending
                    and not self.running
                    and not self.cancelled
                ):
                    self.wake.wait()
                if self.stopping:
                    return
                cancelled, self.cancelled = self.cancelled, set()
                admitted = []
                # A cancelled job still queued is dropped here: it never runs.
                kept = collections.deque(j for j in self.pending if j.rid not in cancelled)
                for job in self.pending:
                    if job.rid in cancelled:
                        self._finish(job, "cancelled")
                self.pending = kept
                while self.pending and len(self.running) < self.max_concurrency:
                    admitted.append(self.pending.popleft())
            for rid in cancelled:
                job = self.running.pop(rid, None)
                if job is not None:
                    self.engine.cancel(rid)
                    self._finish(job, "cancelled")
            if admitted:
                # The next step prefills the new jobs and may take long: nothing held
                # from the previous steps waits for it.
                for job in self.running.values():
                    self._send_output(job, force=True)
            for job in admitted:
                self._admit(job)
            if self.running:
                self._step()

    def _admit(self, job) -> None:
        try:
            self.engine.add(job.seq)
        except Exception as exc:
            log.exception("could not start %s", job.rid)
            self._finish(job, "error", f"{type(exc).__name__}: {exc}")
            return
        self.running[job.rid] = job
        self.out.send(p.Started(rid=job.rid))

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except Exception as exc:
            log.exception("engine step failed")
            for rid, failed in list(self.running.items()):
                self.engine.cancel(rid)
                self._finish(failed, "error", f"engine error: {type(exc).__name__}: {exc}")
            self.running.clear()
            return
        for output in outputs:
            job = self.running.get(output.seq_id)
            if job is None:
                continue
            try:
                self._take(job, output)
            except Exception as exc:
                # Decoding this job's tokens failed: it ends, the others run on.
                log.exception("decoding %s failed", job.rid)
                self.engine.cancel(job.rid)
                self.running.pop(job.rid, None)
                self._finish(job, "error", f"{type(exc).__name__}: {exc}")

    def _take(self, job, output) -> None:
        """One step's output for a job: decode it, hold or send it, finish the job."""
        if output.finished == "error":
            del self.running[job.rid]
            self._send_output(job, force=True)
            self._finish(job, "error", output.error or "generation failed")
            return
        events = []
        used = 0
        for token in output.token_ids:
            used += 1
            events.extend(job.pipeline.push(token))
            if job.pipeline.stopped:
                break
        job.completion_tokens += used
        ended = output.finished is not None or job.pipeline.stopped
        if ended:
            events.extend(job.pipeline.close())
            if output.finished is None:
                self.engine.cancel(job.rid)
        job.held_events.extend(events)
        job.held_tokens += used
        self._send_output(job, force=ended)
        if ended:
            del self.running[job.rid]
            self._finish(job, job.pipeline.finish_reason(output.finished or "stop"))

    def _send_output(self, job, force: bool) -> None:
        """Send a job's held output, at most every SEND_INTERVAL_S unless ``force``.

        A model faster than the interval would otherwise cost the supervisor a frame per
        token; a slower one still sends every token at once, and the first token of a
        request is never held.
        """
        if not (job.held_events or job.held_tokens):
            return
        now = time.monotonic()
        if force or now - job.last_sent >= SEND_INTERVAL_S:
            self.out.send(p.Output(rid=job.rid, tokens=job.held_tokens, events=job.held_events))
            job.held_events, job.held_tokens, job.last_sent = [], 0, now

    def _finish(self, job, reason: str, error: str | None = None) -> None:
        self.out.send(
            p.Done(
                rid=job.rid,
                reason=reason,
                prompt_tokens=job.prompt_tokens,
                completion_tokens=job.completion_tokens,
                stop_sequence=job.pipeline.matched_stop,
                error=error,
                cached_tokens=job.seq.cached_tokens,
                engine=self._figures(),
            )
        )

    def _figures(self) -> dict[str, int]:
        figures = getattr(self.engine, "figures", None)
        return figures() if figures is not None else {}


def build_engine(load: p.Load):
    from cortex.services.neuron.engines.base import EngineOptions

    options = EngineOptions(
        path=load.path,
        devices=load.devices,
        max_seq_len=load.max_seq_len,
        cache_type=load.cache_type,
        max_concurrency=load.max_concurrency,
        cpu_threads=load.cpu_threads,
        batching=load.batching,
        prefix_cache_bytes=load.prefix_cache_bytes,
    )
    if load.backend == "exllamav2":
        from cortex.services.neuron.engines.exllamav2_engine import ExLlamaV2Engine

        return ExLlamaV2Engine(options)
    from cortex.services.neuron.engines.transformers_engine import TransformersEngine

    return TransformersEngine(options, make_sampler)


def make_sampler(params, vocab_size: int, prompt_ids, constraint):
    """The pipeline's sampler; wrapped by the constraint when the output is constrained."""
    from cortex.services.neuron.pipeline import constrain, sampling

    sampler = sampling.Sampler(params, vocab_size, prompt_ids=prompt_ids)
    return sampler if constraint is None else constrain.ConstrainedSampler(sampler, constraint)


def prewarm() -> list[str]:
    """Import what every backend needs, before a load arrives (a spare worker)."""
    imported = []
    for name in ("torch", "transformers"):
        try:
            __import__(name)
            imported.append(name)
        except ImportError:
            pass
    if "transformers" in imported:
        # AutoModel classes are lazy; resolving them here moves seconds off the load.
        from transformers import AutoModelForCausalLM  # noqa: F401
    return imported


def serve(stdin: Reader, out: FrameWriter, warm: bool) -> int:
    imported = prewarm() if warm else []
    out.send(p.Ready(pid=os.getpid(), imported=imported))
    message = read_frame(stdin)
    if not isinstance(message, p.Load):
        return 0
    started = time.monotonic()
    try:
        engine = build_engine(message)
        caps = engine.load(lambda done, total: out.send(p.Progress(done=done, total=total)))
        from cortex.services.neuron.worker.prepare import JobFactory

        factory = JobFactory(message.path, caps.max_seq_len, caps.vocab_size)
    except Exception as exc:
        from cortex.services.neuron.engines.base import EngineUnavailable

        status = 400 if isinstance(exc, EngineUnavailable) else 500
        log.exception("load of %s failed", message.model_id)
        out.send(p.LoadFailed(message=f"{type(exc).__name__}: {exc}", status=status))
        return 1
    out.send(
        p.Loaded(
            max_concurrency=caps.max_concurrency,
            max_seq_len=caps.max_seq_len,
            vocab_size=caps.vocab_size,
            devices=caps.devices,
            cache_type=caps.cache_type,
            memory=engine.memory(),
            notes=caps.notes,
            batching=caps.batching,
            prefix_cache_bytes=caps.prefix_cache_bytes,
        )
    )
    log.info(
        "loaded %s in %.2fs (%s)", message.model_id, time.monotonic() - started, message.backend
    )
    loop = EngineLoop(engine, out, caps.max_concurrency)
    thread = threading.Thread(target=loop.run, name="engine", daemon=True)
    thread.start()
    from cortex.services.neuron.worker.intake import read_requests

    read_requests(stdin, out, loop, factory)
    loop.stop()
    thread.join(timeout=5)
    engine.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Ctrl+C in a terminal reaches the whole process group: the supervisor decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol on the original stdout; anything printed goes to stderr.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    level = os.environ.get("CORTEX_WORKER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, stream=sys.stderr, format="worker[%(process)d] %(levelname)s %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    stdin = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    try:
        return serve(_Exact(stdin), FrameWriter(protocol_out), warm="--prewarm" in argv)
    except BrokenPipeError:
        return 0


class _Exact:
    """read(n) that returns n bytes or fewer only at EOF (an unbuffered pipe can return less)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0:
            chunk = self._raw.read(n)
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
