"""Opening the inventory database: engine, SQLite pragmas, migrations to head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import URL, Engine, make_url
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
    where = f"database.url in {config_path}" if config_path else "database.url"
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    try:
        _check_sqlite_options(make_url(url), where)
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        reason = (
            f"its driver is not installed ({e.name})"
            if isinstance(e, ImportError)
            else ("it is malformed or names an unknown database")
        )
        raise ConfigError(
            f"{where} cannot be used: {reason}. Use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB (pip install 'certman[postgres]')."
        ) from None
    _check_driver_options(engine, where)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# What pysqlite takes from the URL's query (SQLAlchemy's pysqlite dialect, "URI Connections");
# anything else it ignores with a warning, unless uri=true hands it to SQLite.
_PYSQLITE_OPTIONS = frozenset(
    {"timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements", "uri"}
)


def _check_sqlite_options(url: URL, where: str) -> None:
    """Refuse a query option pysqlite would ignore (SQLAlchemy only warns)."""
    if url.get_backend_name() != "sqlite" or url.query.get("uri") in ("true", ("true",)):
        return
    unknown = sorted(set(url.query) - _PYSQLITE_OPTIONS)
    if unknown:
        raise ConfigError(
            f"{where} has the option {unknown[0]!r}, which SQLite does not take; "
            f"remove it (the options are: {', '.join(sorted(_PYSQLITE_OPTIONS))})."
        )


def _check_driver_options(engine: Engine, where: str) -> None:
    """Refuse a URL query option psycopg would reject at the first connection.

    The message names the option, never the URL (it may hold a password).
    """
    url = engine.url
    if engine.dialect.driver == "psycopg":
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict, make_conninfo, timeout_from_conninfo

        _, params = engine.dialect.create_connect_args(url)
        params = {k: v for k, v in params.items() if isinstance(v, str | int)}
        try:
            timeout_from_conninfo(conninfo_to_dict(make_conninfo(**params)))
        except ProgrammingError as e:
            problem = str(e).strip().splitlines()[0] if str(e).strip() else "invalid option"
            if url.password:
                problem = problem.replace(str(url.password), "***")
            raise ConfigError(
                f"{where} has an option psycopg refuses ({problem}); fix or remove it "
                "(see libpq's connection parameters)."
            ) from None


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
