"""The inventory database: migrations to head, WAL mode, aware UTC times, the indexed queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel, select

from certman.errors import InventoryError
from certman.inventory import tables  # noqa: F401  (registers every table on the metadata)
from certman.inventory.database import (
    HEAD_REVISION,
    current_revision,
    make_engine,
    migrate,
    require_head,
)
from certman.inventory.tables import ManagedCertificate
from certman.service.due import due_names
from certman.service.runtime import Runtime
from tests.sqlplan import query_plan


def engine_at(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_engine(f"sqlite:///{tmp_path / 'certman.db'}")


def test_migrations_bring_an_empty_database_to_head(tmp_path: Path) -> None:
    engine = engine_at(tmp_path)
    assert current_revision(engine) is None
    assert migrate(engine)
    assert current_revision(engine) == HEAD_REVISION
    require_head(engine)


def test_migrating_a_database_at_head_applies_nothing(tmp_path: Path) -> None:
    engine = engine_at(tmp_path)
    migrate(engine)
    assert not migrate(engine)


def test_the_migrated_schema_matches_the_table_models(tmp_path: Path) -> None:
    engine = engine_at(tmp_path)
    migrate(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == [], "the models changed without a migration"


def test_an_unmigrated_database_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="certman init"):
        require_head(engine_at(tmp_path))


def test_sqlite_runs_in_wal_mode(runtime: Runtime) -> None:
    with runtime.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_times_come_back_as_aware_utc(runtime: Runtime) -> None:
    when = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    with runtime.session() as session:
        session.add(ManagedCertificate(name="t", created_at=when, updated_at=when, not_after=when))
        session.commit()
    with runtime.session() as session:
        cert = session.exec(select(ManagedCertificate)).one()
    assert cert.not_after == when
    assert cert.not_after.tzinfo is not None
    assert cert.not_after.utcoffset() == timedelta(0)


def test_naive_times_are_refused(runtime: Runtime) -> None:
    naive = datetime(2026, 5, 1, 12, 0)
    with runtime.session() as session:
        session.add(ManagedCertificate(name="t", created_at=naive, updated_at=naive))
        with pytest.raises(Exception, match="naive datetime"):
            session.commit()


def test_the_renewal_query_uses_its_index(runtime: Runtime) -> None:
    now = datetime.now(UTC)
    plan = query_plan(runtime, lambda session: due_names(session, now, limit=10))
    assert "ix_certificate_status_due" in plan
