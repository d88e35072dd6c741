"""Bulk commits on SQLite: checkpoints on a thread, the connection's own setting restored."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import Engine

from certman.inventory.checkpoints import checkpoints_aside
from certman.inventory.database import make_engine

ROWS, ROW_BYTES = 1500, 4000  # about 6 MB: well over the 1,000-page autocheckpoint


def _engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    return engine


def _insert(connection, start: int) -> None:  # type: ignore[no-untyped-def]
    connection.exec_driver_sql(
        "INSERT INTO t (id, body) VALUES (?, ?)",
        [(start + i, os.urandom(ROW_BYTES)) for i in range(ROWS)],
    )
    connection.commit()


def test_commits_leave_the_copy_to_the_thread_and_the_setting_comes_back(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    database = tmp_path / "c.db"
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        with checkpoints_aside(connection) as checkpoints:
            assert driver.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
            before = database.stat().st_size
            _insert(connection, 0)
            # The commit itself no longer copied the log into the database...
            assert database.stat().st_size == before
            checkpoints.after_commit()
            checkpoints.wait()
            # ...the thread did.
            assert database.stat().st_size >= ROWS * ROW_BYTES
            _insert(connection, ROWS)
            checkpoints.after_commit()
        assert driver.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
        # Leaving waited for the last checkpoint: the second batch is in the database too.
        assert database.stat().st_size >= 2 * ROWS * ROW_BYTES
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2 * ROWS


def test_the_setting_comes_back_when_the_run_fails(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        try:
            with checkpoints_aside(connection) as checkpoints:
                _insert(connection, 0)
                checkpoints.after_commit()
                raise RuntimeError("a batch failed")
        except RuntimeError:
            pass
        assert driver.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
