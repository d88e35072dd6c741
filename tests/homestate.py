"""A snapshot of everything a certman home holds: every file and every database row.

Refusal tests take one before and one after a refused command and compare them: bad
input must change nothing at all.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

# SQLite's transient companions come and go with connections; the rows are what count.
_TRANSIENT_SUFFIXES = ("-wal", "-shm", "-journal")
DATABASE = "certman.db"


@dataclass(frozen=True)
class HomeSnapshot:
    files: dict[str, tuple[str, int]]  # relative path -> (sha256, mode)
    tables: dict[str, list[tuple[object, ...]]]

    def diff(self, other: HomeSnapshot) -> list[str]:
        """Human-readable differences, for assertion messages."""
        changes = []
        for path in sorted(set(self.files) | set(other.files)):
            if self.files.get(path) != other.files.get(path):
                changes.append(f"file {path}: {self.files.get(path)} -> {other.files.get(path)}")
        for table in sorted(set(self.tables) | set(other.tables)):
            before, after = self.tables.get(table), other.tables.get(table)
            if before != after:
                changes.append(f"table {table}: {len(before or [])} -> {len(after or [])} rows")
        return changes


def snapshot_home(home: Path) -> HomeSnapshot:
    files: dict[str, tuple[str, int]] = {}
    if home.exists():
        for path in sorted(home.rglob("*")):
            relative = path.relative_to(home).as_posix()
            if path.is_dir() or relative.endswith(_TRANSIENT_SUFFIXES) or relative == DATABASE:
                continue
            files[relative] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
    return HomeSnapshot(files=files, tables=database_rows(home / DATABASE))


def database_rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, sorted, read without writing anything."""
    if not db.exists():
        return {}
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            table: sorted(
                connection.execute(f'SELECT * FROM "{table}"').fetchall(),
                key=repr,
            )
            for table in tables
        }
    finally:
        connection.close()


def assert_unchanged(before: HomeSnapshot, home: Path) -> None:
    after = snapshot_home(home)
    assert before == after, "the home changed:\n" + "\n".join(before.diff(after))
