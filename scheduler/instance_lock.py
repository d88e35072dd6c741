"""One `certman serve` per SQLite database: an OS file lock plus a heartbeat row."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from certman.errors import InventoryError
from certman.inventory.tables import InstanceLock
from certman.service.runtime import Runtime

SERVE_LOCK = "serve"
SEVERAL = "use PostgreSQL ([database] url) to run several instances"


@dataclass
class ServiceLock:
    """Held for as long as the service runs; a no-op on PostgreSQL (instances share work).

    The file lock (``<db>.serve.lock``) is released by the kernel when the process dies,
    so a crashed service never blocks its successor. The ``instance_lock`` row, renewed
    by ``heartbeat`` and expiring after ``ttl``, also covers a database file that another
    host opens (where the file lock may not reach); a row left by a dead process on this
    host is taken over at once, since this process holds the file lock.
    """

    rt: Runtime
    holder: str
    ttl: timedelta
    _fd: int | None = field(default=None, repr=False)

    @property
    def needed(self) -> bool:
        return self.rt.engine.dialect.name == "sqlite"

    def acquire(self) -> None:
        if not self.needed:
            return
        self._lock_file()
        try:
            self._claim_row()
        except BaseException:
            self._unlock_file()
            raise

    def heartbeat(self) -> None:
        if self.needed and self._fd is not None:
            self._claim_row()

    def release(self) -> None:
        if not self.needed or self._fd is None:
            return
        with self.rt.session() as session:
            session.execute(
                delete(InstanceLock)
                .where(col(InstanceLock.name) == SERVE_LOCK)
                .where(col(InstanceLock.holder) == self.holder)
            )
            session.commit()
        self._unlock_file()

    def _lock_path(self) -> Path | None:
        database = self.rt.engine.url.database or ""
        if database in ("", ":memory:"):
            return None
        return Path(database).with_name(Path(database).name + ".serve.lock")

    def _lock_file(self) -> None:
        path = self._lock_path()
        if path is None:  # an in-memory database: no other process can open it
            self._fd = -1
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 255, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InventoryError(
                f"Another `certman serve` ({other}) is running on this SQLite database; "
                f"stop it first, or {SEVERAL}."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.holder.encode(), 0)
        self._fd = fd

    def _unlock_file(self) -> None:
        if self._fd is not None and self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
        self._fd = None

    def _claim_row(self) -> None:
        now = self.rt.clock.now()
        with self.rt.session() as session:
            row = session.exec(select(InstanceLock).where(InstanceLock.name == SERVE_LOCK)).first()
            if row is not None and row.holder != self.holder and not self._stale(row, now):
                raise InventoryError(
                    f"Another `certman serve` ({row.holder}) is running on this SQLite "
                    f"database; stop it first, or {SEVERAL}."
                )
            if row is None:
                row = InstanceLock(name=SERVE_LOCK, holder=self.holder)
            row.holder, row.expires_at = self.holder, now + self.ttl
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # another host inserted the row at the same moment
                raise InventoryError(
                    "Another `certman serve` started on this SQLite database at the same "
                    f"moment; run only one, or {SEVERAL}."
                ) from None

    def _stale(self, row: InstanceLock, now: datetime) -> bool:
        same_host = row.holder.split(":", 1)[0] == socket.gethostname()
        return same_host or row.expires_at is None or row.expires_at <= now
