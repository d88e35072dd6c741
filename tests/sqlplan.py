"""SQLite's plan for the one query a piece of code sends: do the scheduler's queries use
their indexes?"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import sqlite
from sqlmodel import Session

from certman.service.runtime import Runtime


def query_plan(runtime: Runtime, run: Callable[[Session], object]) -> str:
    """``EXPLAIN QUERY PLAN`` of the single statement ``run`` executes through its session."""
    captured: list[str] = []
    with runtime.session() as session:
        original = session.exec

        def capture(statement: Any, *args: Any, **kwargs: Any) -> Any:
            compiled = statement.compile(
                dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
            )
            captured.append(str(compiled))
            return original(statement, *args, **kwargs)

        session.exec = capture  # type: ignore[method-assign]
        run(session)
    (sql,) = captured
    with runtime.engine.connect() as connection:
        return " ".join(str(row) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
