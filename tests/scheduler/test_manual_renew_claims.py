"""`certman renew` takes the same lease as `certman serve`, so the two never renew one
certificate at the same time."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import update

from certman.service.runtime import Runtime
from scheduler.claims import TABLE, claim, holder_of


def revision(cli, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(json.loads(cli.ok("show", name, "--json").stdout)["revision"])


def test_renew_refuses_a_certificate_the_service_is_renewing(cli, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    cli.ok("issue", "web", "-d", "web.example.com")
    assert claim(runtime, "web", "serve:other-host:1", timedelta(minutes=10))

    result = cli("renew", "web", "--force")

    assert result.exit_code == 1
    assert "being renewed by serve:other-host:1" in result.stderr
    assert "Traceback" not in result.stderr
    assert revision(cli, "web") == 1
    current = holder_of(runtime, "web")
    assert current is not None and current[0] == "serve:other-host:1"  # its lease is left alone


def test_renew_proceeds_once_the_other_lease_has_expired_and_gives_it_back(
    cli, runtime: Runtime
) -> None:  # type: ignore[no-untyped-def]
    cli.ok("issue", "web", "-d", "web.example.com")
    assert claim(runtime, "web", "serve:crashed:1", timedelta(minutes=10))
    with runtime.session() as session:
        session.execute(
            update(TABLE)
            .where(TABLE.c.name == "web")
            .values(claimed_until=runtime.clock.now() - timedelta(seconds=1))
        )
        session.commit()

    cli.ok("renew", "web", "--force")

    assert revision(cli, "web") == 2
    assert holder_of(runtime, "web") == (None, None)


def test_renew_due_skips_held_certificates_and_renews_the_rest(cli, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    for name in ("held", "free"):
        cli.ok("issue", name, "-d", f"{name}.example.com")
    with runtime.session() as session:  # both due now
        session.execute(
            update(TABLE).values(renewal_due_at=runtime.clock.now() - timedelta(hours=1))
        )
        session.commit()
    assert claim(runtime, "held", "serve:other-host:1", timedelta(minutes=10))

    result = cli.ok("renew", "--due")

    assert (
        "held: skipped" in result.stdout and "being renewed by serve:other-host:1" in result.stdout
    )
    assert "free: revision 2 active." in result.stdout
    assert revision(cli, "held") == 1 and revision(cli, "free") == 2
    assert holder_of(runtime, "free") == (None, None)
