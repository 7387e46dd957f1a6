"""Reads a neuron's ``/events`` stream in a thread, for tests that wait on events."""

from __future__ import annotations

import json
import threading

import httpx

from cortex.common.sse import SSEDecoder


class EventRecorder:
    """Reads a neuron's /events in a thread; ``wait_for`` polls what arrived."""

    def __init__(self, neuron) -> None:
        self.events: list = []
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(neuron,), daemon=True)
        self._thread.start()
        assert self._connected.wait(30), "no /events connection"

    def _run(self, neuron) -> None:
        decoder = SSEDecoder()
        with (
            httpx.Client(headers=neuron.headers, timeout=None) as client,
            client.stream("GET", neuron.url + "/events") as response,
        ):
            self._connected.set()
            for chunk in response.iter_bytes():
                for event in decoder.feed(chunk):
                    self.events.append((event.event, json.loads(event.data)))
                if self._stop.is_set():
                    return

    def wait_for(self, neuron, predicate, timeout: float = 60.0):
        return neuron.wait_for(
            lambda: next((e for e in list(self.events) if predicate(*e)), None), timeout
        )

    def close(self) -> None:
        self._stop.set()
