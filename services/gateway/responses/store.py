"""Stored responses in an embedded SQLite database (stdlib ``sqlite3``).

One row per response: its id, when it was made, and the :class:`StoredResponse` as
JSON (readable with the ``sqlite3`` shell). A row holds the whole conversation that led
to it, so ``previous_response_id`` works even after older responses expired.

Retention: every write first drops rows older than ``max_age_s`` and then the oldest
beyond ``max_count``. WAL mode, so a reader never waits on a writer. The gateway calls
the ``a*`` methods, which run the blocking sqlite calls on a worker thread; one
connection is shared under a lock.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path

import msgspec

from cortex.common.responses import StoredResponse

log = logging.getLogger("cortex.gateway.responses")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created_at ON responses (created_at);
"""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StoredResponse)


class ResponseStore:
    def __init__(self, path: Path, *, max_age_s: float, max_count: int) -> None:
        self.path = path
        self.max_age_s = max_age_s
        self.max_count = max_count
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def put(self, stored: StoredResponse) -> None:
        body = _encoder.encode(stored).decode()
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO responses (id, created_at, body) VALUES (?, ?, ?)",
                (stored.response.id, now, body),
            )
            self._db.execute("DELETE FROM responses WHERE created_at < ?", (now - self.max_age_s,))
            self._db.execute(
                "DELETE FROM responses WHERE id IN (SELECT id FROM responses "
                "ORDER BY created_at DESC LIMIT -1 OFFSET ?)",
                (self.max_count,),
            )

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body, created_at FROM responses WHERE id = ?", (response_id,)
            ).fetchone()
        if row is None or row[1] < time.time() - self.max_age_s:
            return None
        try:
            return _decoder.decode(row[0])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning(
                "stored response %s cannot be read (%s); treating it as gone", response_id, exc
            )
            return None

    def delete(self, response_id: str) -> bool:
        with self._lock, self._db:
            cursor = self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cursor.rowcount > 0

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    async def aput(self, stored: StoredResponse) -> None:
        await asyncio.to_thread(self.put, stored)

    async def aget(self, response_id: str) -> StoredResponse | None:
        return await asyncio.to_thread(self.get, response_id)

    async def adelete(self, response_id: str) -> bool:
        return await asyncio.to_thread(self.delete, response_id)
