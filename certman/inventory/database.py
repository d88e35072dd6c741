"""Opening the inventory database: engine, SQLite pragmas, migrations to head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import create_engine

from certman.errors import ConfigError, InventoryError, one_line
from certman.redact import scrub

MIGRATIONS = Path(__file__).parent / "migrations"


def _head_revision() -> str:
    """The newest migration. Files are named NNNN_*.py with revision id NNNN, in one line."""
    names = sorted(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    return names[-1]


# `certman` refuses to work on a database that is not at this revision.
HEAD_REVISION = _head_revision()


def make_engine(url: str, *, config_path: Path | None = None) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    A URL SQLAlchemy cannot use (unknown dialect, driver not installed, malformed) is a
    ConfigError naming ``database.url`` and the file it came from; the URL itself is not
    repeated, since it may hold a password.
    """
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    try:
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        where = f" in {config_path}" if config_path else ""
        reason = (
            f"its driver is not installed ({e.name})"
            if isinstance(e, ImportError)
            else ("it is malformed or names an unknown database")
        )
        raise ConfigError(
            f"database.url{where} cannot be used: {reason}. Use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB (pip install 'certman[postgres]')."
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def migrate(engine: Engine) -> bool:
    """Bring the schema to head; return True when anything was applied."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    before = current_revision(engine)
    if before == HEAD_REVISION:
        return False
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except SQLAlchemyError as e:
        raise InventoryError(f"Migrating the database failed: {one_line(e)}.") from None
    return True


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as e:
        raise InventoryError(
            f"The database cannot be opened: {scrub(str(e.orig))}. Check [database] url and "
            "permissions."
        ) from None


def require_head(engine: Engine) -> None:
    """Refuse to work on a database that is missing or not migrated."""
    revision = current_revision(engine)
    if revision is None:
        raise InventoryError(
            "The database has no certman schema; run `certman init` first "
            "(or check --home / [database] url)."
        )
    if revision != HEAD_REVISION:
        raise InventoryError(
            f"The database schema is at {revision}, this certman needs {HEAD_REVISION}; "
            "run `certman init` to migrate it."
        )
