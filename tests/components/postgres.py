"""A throwaway PostgreSQL cluster under a temp dir, on a free loopback port, for tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.components.pebble import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def postgres_available() -> bool:
    return (BIN / "initdb").exists() and shutil.which("runuser") is not None


class PostgresCluster:
    """`initdb` + `pg_ctl start` as the postgres user (initdb refuses root), fsync off.

    ``url(database)`` is a SQLAlchemy URL for psycopg 3; ``create_database`` makes a fresh
    database so that tests sharing one cluster never see each other's rows.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()

    def _as_postgres(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip() or result.stdout}")
        return result.stdout

    def start(self) -> PostgresCluster:
        shutil.chown(self.workdir, "postgres", "postgres")
        self.workdir.chmod(0o700)
        self._as_postgres(
            str(BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.workdir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._as_postgres(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.workdir / "postgres.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    def create_database(self, name: str) -> str:
        self._as_postgres(
            str(BIN / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-c",
            f'CREATE DATABASE "{name}"',
        )
        return self.url(name)

    def url(self, database: str = "certman") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with suppress(RuntimeError, subprocess.TimeoutExpired):
                self._as_postgres(
                    str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
                )


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a cluster, yield it, stop it and delete its files at the end."""
    scratch = Path(tempfile.mkdtemp(prefix="certman-pg-"))
    cluster = PostgresCluster(scratch)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def postgres_url(database: str = "certman") -> Iterator[str]:
    """A fresh database on a throwaway cluster: postgresql+psycopg://postgres@127.0.0.1:PORT/DB."""
    with postgres_cluster() as cluster:
        yield cluster.create_database(database)
