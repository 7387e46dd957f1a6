"""The supervisor's handle on one worker process: spawn, frames in and out, exit.

A reader task decodes frames from the worker's stdout and routes them: load messages to
the load in progress, request messages to that request's queue. When the pipe closes
(unload, crash, kill -9) every open request gets a ``Done(reason="error")`` and the
``on_exit`` callback learns the exit code, so nothing waits forever on a dead worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable

import msgspec

from cortex.services.neuron.worker import protocol as p

log = logging.getLogger("cortex.neuron.worker")


class WorkerGone(Exception):
    """The worker exited (or was never started) before answering."""


class LoadError(Exception):
    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def load_env(load: p.Load) -> dict[str, str]:
    """What a worker's environment needs for this load, set at spawn: CUDA reads
    CUDA_VISIBLE_DEVICES once, at its first use (a prewarmed import may be that), so an
    exllamav2 load (autosplit over every visible GPU) is confined to its GPUs here."""
    if load.backend != "exllamav2":
        return {}
    indices = [d.split(":", 1)[1] for d in load.devices if d.startswith("cuda:")]
    return {"CUDA_VISIBLE_DEVICES": ",".join(indices)} if indices else {}


class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.ready: asyncio.Future[p.Ready] = asyncio.get_running_loop().create_future()
        self.exit_code: int | None = None
        self.stop_reason: str | None = None  # set when we end it on purpose
        self.on_exit: Callable[[WorkerProcess], None] | None = None
        self._load_queue: asyncio.Queue = asyncio.Queue()
        self._requests: dict[str, asyncio.Queue] = {}
        self._closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read_frames(), name=f"worker-{self.pid}")

    @classmethod
    async def spawn(cls, *, prewarm: bool, env: dict[str, str] | None = None) -> WorkerProcess:
        args = [sys.executable, "-m", "cortex.services.neuron.worker"]
        if prewarm:
            args.append("--prewarm")
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            limit=p.MAX_FRAME,
        )
        return cls(proc)

    @property
    def alive(self) -> bool:
        return not self._closed.is_set()

    # ------------------------------------------------------------------ frames

    async def _read_frames(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        # Read what has arrived and dispatch every whole frame in it: a fast model sends
        # a frame per token, and one await per read (not two per frame) keeps up.
        buffer = b""
        size = p.HEADER.size
        try:
            while chunk := await stdout.read(1 << 16):
                buffer += chunk
                start = 0
                while len(buffer) - start >= size:
                    end = start + size + p.frame_length(buffer[start : start + size])
                    if end > len(buffer):
                        break
                    self._dispatch(p.decode_from_worker(buffer[start + size : end]))
                    start = end
                buffer = buffer[start:]
        except ConnectionError:
            pass
        except (msgspec.DecodeError, ValueError) as exc:
            log.error("worker %s sent a bad frame (%s); stopping it", self.pid, exc)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        finally:
            self.exit_code = await self.proc.wait()
            self._closed.set()
            self._fail_all()
            if self.on_exit is not None:
                self.on_exit(self)

    def _dispatch(self, message: p.FromWorker) -> None:
        if isinstance(message, p.Ready):
            if not self.ready.done():
                self.ready.set_result(message)
            return
        if isinstance(message, p.Progress | p.Loaded | p.LoadFailed):
            self._load_queue.put_nowait(message)
            return
        queue = self._requests.get(message.rid)
        if queue is not None:
            queue.put_nowait(message)
            if isinstance(message, p.Done | p.Rejected | p.Tokenized):
                self._requests.pop(message.rid, None)

    def _fail_all(self) -> None:
        if not self.ready.done():
            self.ready.set_exception(WorkerGone(self.describe_exit()))
        self._load_queue.put_nowait(None)
        for rid, queue in list(self._requests.items()):
            queue.put_nowait(p.Done(rid=rid, reason="error", error=self.describe_exit()))
        self._requests.clear()

    def describe_exit(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        code = self.exit_code
        if code is None:
            return "the model worker stopped"
        if code < 0:
            return f"the model worker was killed by signal {-code}"
        return f"the model worker exited with code {code}"

    def send(self, message: msgspec.Struct) -> None:
        if not self.alive or self.proc.stdin is None or self.proc.stdin.is_closing():
            raise WorkerGone(self.describe_exit())
        self.proc.stdin.write(p.encode_frame(message))

    # ------------------------------------------------------------------ load

    async def load(self, message: p.Load, on_progress: Callable[[p.Progress], None]) -> p.Loaded:
        try:
            await self.ready
        except WorkerGone as exc:
            raise LoadError(f"the model worker failed to start: {exc}") from None
        self.send(message)
        while True:
            item = await self._load_queue.get()
            if item is None:
                raise LoadError(f"load failed: {self.describe_exit()}")
            if isinstance(item, p.Progress):
                on_progress(item)
            elif isinstance(item, p.LoadFailed):
                raise LoadError(item.message, item.status)
            else:
                return item

    # ------------------------------------------------------------------ requests

    def open(self, rid: str) -> asyncio.Queue:
        """A queue receiving every message for ``rid`` until (and including) its last."""
        if not self.alive:
            raise WorkerGone(self.describe_exit())
        queue: asyncio.Queue = asyncio.Queue()
        self._requests[rid] = queue
        return queue

    def forget(self, rid: str) -> None:
        self._requests.pop(rid, None)

    # ------------------------------------------------------------------ ending

    async def stop(
        self, grace: float = 5.0, reason: str = "the model worker was stopped"
    ) -> int | None:
        """Ask the worker to exit (EOF on its stdin), then kill it if it does not."""
        self.stop_reason = reason
        if self.alive and self.proc.stdin is not None and not self.proc.stdin.is_closing():
            with contextlib.suppress(Exception):
                self.proc.stdin.write(p.encode_frame(p.Shutdown()))
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self._closed.wait(), grace)
        except TimeoutError:
            self.kill()
            await self._closed.wait()
        return self.exit_code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def wait_closed(self) -> None:
        await self._closed.wait()
