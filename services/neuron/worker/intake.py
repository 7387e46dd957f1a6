"""The worker's intake: frames from the supervisor, control first.

The reader (main thread) only decodes frames. A Cancel takes effect at once; requests
and tokenize calls go to a preparing thread, which validates, renders the template,
tokenises and builds any grammar, then answers ``Accepted`` / ``Rejected`` and queues
the job. So a Cancel never waits behind another request's preparation, which for a
long prompt or a large schema takes a while.
"""

from __future__ import annotations

import queue
import threading

from cortex.services.neuron.worker import protocol as p
from cortex.services.neuron.worker.prepare import JobFactory, error_fields
from cortex.services.neuron.worker.runtime import EngineLoop, FrameWriter, Reader, read_frame


class Intake:
    """What the reader hands over, and the jobs cancelled while still being prepared."""

    def __init__(self, out: FrameWriter, loop: EngineLoop, factory: JobFactory) -> None:
        self.out = out
        self.loop = loop
        self.factory = factory
        self._work: queue.SimpleQueue[p.Generate | p.Tokenize | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._preparing: set[str] = set()
        self._withdrawn: set[str] = set()
        self._thread = threading.Thread(target=self._prepare_all, name="prepare", daemon=True)
        self._thread.start()

    # the reader thread ----------------------------------------------------------

    def take(self, message: p.Generate | p.Tokenize) -> None:
        if isinstance(message, p.Generate):
            with self._lock:
                self._preparing.add(message.rid)
        self._work.put(message)

    def cancel(self, rid: str) -> None:
        with self._lock:
            if rid in self._preparing:
                self._withdrawn.add(rid)
            self.loop.cancel(rid)

    def close(self) -> None:
        self._work.put(None)
        self._thread.join(timeout=5)

    # the preparing thread -------------------------------------------------------

    def _prepare_all(self) -> None:
        while (message := self._work.get()) is not None:
            if isinstance(message, p.Generate):
                self._generate(message)
            else:
                self._tokenize(message)

    def _generate(self, message: p.Generate) -> None:
        try:
            if message.endpoint == "chat":
                job = self.factory.chat(message.rid, message.body, message.clamp_max_tokens)
            else:
                job = self.factory.completion(message.rid, message.body, message.clamp_max_tokens)
        except Exception as exc:
            with self._lock:
                self._preparing.discard(message.rid)
                self._withdrawn.discard(message.rid)
            self.out.send(p.Rejected(rid=message.rid, **error_fields(exc)))
            return
        with self._lock:
            self._preparing.discard(message.rid)
            if message.rid in self._withdrawn:  # cancelled while prepared: never runs
                self._withdrawn.discard(message.rid)
                return
            self.out.send(
                p.Accepted(
                    rid=job.rid,
                    prompt_tokens=job.prompt_tokens,
                    max_tokens=job.seq.max_new_tokens,
                    clamped=job.clamped,
                )
            )
            self.loop.submit(job)

    def _tokenize(self, message: p.Tokenize) -> None:
        try:
            ids = self.factory.tokenize(message.body)
        except Exception as exc:
            self.out.send(p.Rejected(rid=message.rid, **error_fields(exc)))
            return
        self.out.send(
            p.Tokenized(
                rid=message.rid, count=len(ids), max_seq_len=self.factory.max_seq_len, ids=ids
            )
        )


def read_requests(stdin: Reader, out: FrameWriter, loop: EngineLoop, factory: JobFactory) -> None:
    """Read frames until EOF or Shutdown; see the module docstring."""
    intake = Intake(out, loop, factory)
    try:
        while True:
            message = read_frame(stdin)
            if message is None or isinstance(message, p.Shutdown):
                return
            if isinstance(message, p.Cancel):
                intake.cancel(message.rid)
            elif isinstance(message, p.Generate | p.Tokenize):
                intake.take(message)
    finally:
        intake.close()
