"""No command prints the database password or the webhook's token, whatever happens.

The home runs on a real PostgreSQL (the throwaway cluster) through a URL with a password;
the webhook URL carries a token in its path and in its query, and points at a closed port
so that every notice fails and is reported. Each command's stdout and stderr is searched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.pebble import free_port
from tests.components.postgres import PostgresCluster, postgres_available, postgres_cluster
from tests.e2e.conftest import CertmanProcess, Run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL 15 is not installed"),
]

PASSWORD = "Pg-s3cret-Passw0rd"
PATH_TOKEN = "T000/B111/hookPathTok3n"
QUERY_TOKEN = "hookQueryTok3n"
SECRETS = (PASSWORD, PATH_TOKEN, "hookPathTok3n", QUERY_TOKEN)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    with postgres_cluster() as running:
        yield running


def secret_config(home: Path, database_url: str) -> Path:
    webhook = f"http://127.0.0.1:{free_port()}/{PATH_TOKEN}?token={QUERY_TOKEN}&x=1"
    home.mkdir(parents=True, mode=0o700)
    config = home / "certman.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        f'[notify]\nthresholds = ["30d"]\n\n[notify.webhook]\nurl = "{webhook}"\n'
    )
    config.chmod(0o600)
    return config


def assert_no_secret(run: Run) -> None:
    for secret in SECRETS:
        assert secret not in run.stdout, (run.args, run.stdout)
        assert secret not in run.stderr, (run.args, run.stderr)


def with_password(cluster: PostgresCluster, database: str) -> str:
    # The cluster trusts loopback, so the password is accepted and never checked.
    return cluster.url(database).replace("postgres@", f"postgres:{PASSWORD}@")


def test_no_command_prints_a_secret(cluster: PostgresCluster, tmp_path: Path) -> None:
    cluster.create_database("secrets")
    certman = CertmanProcess(home=tmp_path / "home")
    secret_config(certman.home, with_password(cluster, "secrets"))

    init = certman.ok("init")
    assert f"postgres:***@127.0.0.1:{cluster.port}/secrets" in init.stdout  # still says where
    certman.ok("issue", "web", "-d", "www.example.com", "--validity", "10d")
    certman.ok("list")
    certman.ok("show", "web")
    certman.ok("renew", "--due")
    certman.ok("renew", "web", "--force")
    serve = certman.ok("serve", "--once")  # the expiry notice fails: the webhook is down
    assert "webhook: http://127.0.0.1:" in serve.stderr  # the failure is logged, masked
    assert "/***: " in serve.stderr
    certman("doctor")
    certman.ok("audit", "verify")
    certman.ok("audit", "list")
    certman.ok("archive", "verify")
    certman.ok("issuer", "list")
    certman.ok("simulate", "--days", "20")
    certman("--debug", "show", "missing")  # an error, with the traceback
    assert certman.runs
    for run in certman.runs:
        assert_no_secret(run)


def test_an_unreachable_database_error_carries_no_password(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    closed = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{free_port()}/certman"
    certman = CertmanProcess(home=tmp_path / "home")
    secret_config(certman.home, closed)
    for args in (("init",), ("list",), ("doctor",), ("--debug", "list"), ("serve", "--once")):
        run = certman(*args)
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        assert "error" in run.stderr.lower() or "fail" in run.stdout.lower()
        assert_no_secret(run)


def test_a_missing_database_error_carries_no_password(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    certman = CertmanProcess(home=tmp_path / "home")
    secret_config(certman.home, with_password(cluster, "does_not_exist"))
    for args in (("init",), ("doctor",), ("--debug", "list")):
        run = certman(*args)
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        assert_no_secret(run)


def test_a_bad_webhook_url_is_refused_without_its_token(tmp_path: Path) -> None:
    certman = CertmanProcess(home=tmp_path / "home")
    config = secret_config(certman.home, "")
    config.write_text(
        config.read_text().replace("http://", "ftp://user:" + PASSWORD + "@"), encoding="utf-8"
    )
    run = certman("list")
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "notify.webhook.url" in run.stderr
    assert_no_secret(run)
