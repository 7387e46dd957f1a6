"""Long chat streams held open through a gateway, for tests that need busy placements.

streams = HeldStreams(gateway.url, "demo-tiny", 3)   # three streams, each resent
...                                                  # when it ends, until closed
streams.close()                                      # the client leaves: cancelled
"""

from __future__ import annotations

import contextlib
import threading

import httpx

# The demo models end on <|im_end|> (2) or <|endoftext|> (0): biasing both away keeps a
# stream going to max_tokens.
NO_EOS = {"0": -100, "2": -100}


class HeldStreams:
    """``count`` long chat streams, read in threads, each sent again when it ends."""

    def __init__(self, url: str, model: str, count: int, *, tag: str = "story") -> None:
        self._stop = threading.Event()
        self.chunks = [0] * count
        self._threads = [
            threading.Thread(target=self._run, args=(url, model, f"{tag} {i}", i), daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str, model: str, text: str, index: int) -> None:
        while not self._stop.is_set():
            self._one(url, model, text, index)

    def _one(self, url: str, model: str, text: str, index: int) -> None:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": f"Tell a long {text}"}],
            "max_tokens": 1900,
            "logit_bias": NO_EOS,
            "stream": True,
        }
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r,
        ):
            for _ in r.iter_raw():
                self.chunks[index] += 1
                if self._stop.is_set():
                    return

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
