"""SQLite WAL checkpoints moved off a bulk writer's path, onto a thread of their own.

In WAL mode a commit that leaves the log over ``wal_autocheckpoint`` pages (1,000) copies the
log into the database before it returns; a bulk batch writes thousands of pages per commit,
so each of its commits waited for that copy and its flush (measured: ~45 ms per 1,000
certificates, half the cost of the batch's commits). Here the writer's connection stops
checkpointing for the run, and after each of its commits a PASSIVE checkpoint starts on a
second connection, on a thread: SQLite releases the GIL while it copies and flushes, so the
writer computes its next step meanwhile. Durability is unchanged: a commit is in the WAL
(synchronous=NORMAL) before it returns, checkpointed or not; a crash leaves a log that the
next opening replays. Other databases checkpoint on their own: there this does nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Connection

from certman.background import Background

log = logging.getLogger(__name__)


class Checkpoints:
    """Started by ``checkpoints_aside``: call ``after_commit`` after each commit of the run."""

    def __init__(self, connection: Connection | None) -> None:
        self._engine = connection.engine if connection is not None else None
        self._reader: Any = None  # the DBAPI connection the thread checkpoints with
        self._running: Background | None = None

    def after_commit(self) -> None:
        """Start copying what is committed so far into the database (a no-op off SQLite)."""
        if self._engine is None:
            return
        self.wait()
        if self._reader is None:
            self._reader = self._engine.raw_connection()
        self._running = Background(self._checkpoint, name="certman-checkpoint")

    def wait(self) -> None:
        """Wait for the checkpoint under way; one that failed is left for SQLite to redo."""
        if self._running is not None:
            running, self._running = self._running, None
            running.wait()

    def close(self) -> None:
        self.wait()
        if self._reader is not None:
            self._reader.close()  # back to the pool
            self._reader = None

    def _checkpoint(self) -> None:
        try:
            cursor = self._reader.cursor()
            try:
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.fetchall()
            finally:
                cursor.close()
        except Exception as e:  # a busy or failed checkpoint loses nothing: the WAL stays
            log.debug("background checkpoint failed: %s", e)


@contextlib.contextmanager
def checkpoints_aside(connection: Connection) -> Iterator[Checkpoints]:
    """For a run of large commits on ``connection`` (kept for the whole run): its commits stop
    checkpointing, ``after_commit`` checkpoints on a thread instead, and on leaving the last
    checkpoint is waited for and the connection's own setting restored."""
    if connection.dialect.name != "sqlite":
        yield Checkpoints(None)
        return
    # On the driver's connection: a PRAGMA through SQLAlchemy would begin a transaction.
    driver = connection.connection.driver_connection
    assert driver is not None
    (before,) = driver.execute("PRAGMA wal_autocheckpoint").fetchone()
    driver.execute("PRAGMA wal_autocheckpoint=0")
    checkpoints = Checkpoints(connection)
    try:
        yield checkpoints
    finally:
        checkpoints.close()
        driver.execute(f"PRAGMA wal_autocheckpoint={int(before)}")
