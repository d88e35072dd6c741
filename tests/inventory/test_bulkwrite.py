"""Batched writes straight to the driver: the rows read back exactly as the ORM's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, func, select

from certman.inventory import bulkwrite
from certman.inventory.bulkwrite import insert_returning, update_by_id
from certman.inventory.database import make_engine, migrate
from certman.inventory.tables import ManagedCertificate

CERTS = ManagedCertificate.__table__  # type: ignore[attr-defined]
AT = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'certman.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def row(name: str, **values: object) -> dict[str, object]:
    base = {"name": name, "domains": "[]", "targets": "[]", "reuse_key": True}
    return {**base, "created_at": AT, "updated_at": AT, **values}


def stored(engine, name: str) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        return tuple(
            connection.execute(
                text("SELECT created_at, not_after, reuse_key FROM certificate WHERE name = :n"),
                {"n": name},
            ).one()
        )


def test_bulk_rows_are_stored_and_read_back_as_the_orm_stores_them(engine) -> None:  # type: ignore[no-untyped-def]
    later = AT + timedelta(days=30)
    with Session(engine) as session:
        session.add(ManagedCertificate(**row("orm", not_after=later)))  # type: ignore[arg-type]
        # the same instant given in another zone is stored as UTC, like the ORM does
        east = later.astimezone(timezone(timedelta(hours=2)))
        ids = dict(insert_returning(session, CERTS, [row("bulk", not_after=east)], ("name", "id")))
        session.commit()
    assert stored(engine, "bulk") == stored(engine, "orm")
    with Session(engine) as session:
        update_by_id(session, CERTS, [{"id": ids["bulk"], "status": "active"}], ("status",))
        session.commit()
        cert = session.exec(
            select(ManagedCertificate).where(ManagedCertificate.name == "bulk")
        ).one()
    assert cert.status == "active" and cert.reuse_key is True
    assert cert.not_after == later and cert.not_after.tzinfo is not None
    assert cert.created_at == AT


def test_a_naive_datetime_is_refused_before_anything_is_written(engine) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        with pytest.raises(ValueError, match="naive datetime"):
            insert_returning(
                session, CERTS, [row("a"), row("b", created_at=datetime(2030, 1, 1))], ("name",)
            )
        session.commit()
        assert session.exec(select(func.count()).select_from(ManagedCertificate)).one() == 0


def test_rows_beyond_one_statement_all_come_back_with_their_ids(
    engine, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(bulkwrite, "_MAX_ROWS_PER_INSERT", 7)
    names = [f"c{i}" for i in range(30)]
    with Session(engine) as session:
        ids = dict(insert_returning(session, CERTS, [row(n) for n in names], ("name", "id")))
        session.commit()
        found = dict(session.exec(select(ManagedCertificate.name, ManagedCertificate.id)).all())
    assert ids == found and len(set(ids.values())) == 30
