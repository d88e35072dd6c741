"""Commands behave as the service does: `certman renew` takes the same lease as
`certman serve` (the two never renew one certificate at once), and a failed renewal or
deployment from the command line sends the same notice."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from certman.scheduler.events import DEPLOY_FAILED
from sqlalchemy import update

from certman.service.leases import TABLE, Lease, claim, holder_of
from certman.service.runtime import Runtime
from tests.scheduler.conftest import Webhook


def revision(cli, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(json.loads(cli.ok("show", name, "--json").stdout)["revision"])


def test_renew_refuses_a_certificate_the_service_is_renewing(cli, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    cli.ok("issue", "web", "-d", "web.example.com")
    assert claim(runtime, "web", Lease(holder="serve:other-host:1", duration=timedelta(minutes=10)))

    result = cli("renew", "web", "--force")

    assert result.exit_code == 1
    assert "being worked on by serve:other-host:1" in result.stderr
    assert "Traceback" not in result.stderr
    assert revision(cli, "web") == 1
    current = holder_of(runtime, "web")
    assert current is not None and current[0] == "serve:other-host:1"  # its lease is left alone


def test_renew_proceeds_once_the_other_lease_has_expired_and_gives_it_back(
    cli, runtime: Runtime
) -> None:  # type: ignore[no-untyped-def]
    cli.ok("issue", "web", "-d", "web.example.com")
    assert claim(runtime, "web", Lease(holder="serve:crashed:1", duration=timedelta(minutes=10)))
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
    assert claim(
        runtime, "held", Lease(holder="serve:other-host:1", duration=timedelta(minutes=10))
    )

    result = cli.ok("renew", "--due")

    assert (
        "held: skipped" in result.stdout
        and "being worked on by serve:other-host:1" in result.stdout
    )
    assert "free: revision 2 active." in result.stdout
    assert revision(cli, "held") == 1 and revision(cli, "free") == 2
    assert holder_of(runtime, "free") == (None, None)


def _file_target(home: Path, reload_command: str) -> None:
    tls = home.parent / "tls"
    tls.mkdir(exist_ok=True)
    config = home / "certman.toml"
    config.write_text(
        config.read_text()
        + '\n[targets.web]\ntype = "file"\n'
        + f'fullchain_path = "{tls / "fullchain.pem"}"\nkey_path = "{tls / "privkey.pem"}"\n'
        + f'reload_command = "{reload_command}"\n'
    )


def _hook(home: Path, url: str) -> None:
    config = home / "certman.toml"
    config.write_text(config.read_text() + f'\n[notify.webhook]\nurl = "{url}"\n')


def _issued_with_a_failing_reload(cli, home: Path, webhook: Webhook) -> None:  # type: ignore[no-untyped-def]
    """`web` issued and deployed; from now on its reload command fails; notices on."""
    _file_target(home, "true")
    cli.ok("issue", "web", "-d", "web.example.com", "--target", "web")
    config = home / "certman.toml"
    config.write_text(
        config.read_text().replace('reload_command = "true"', 'reload_command = "false"')
    )
    _hook(home, webhook.url)


def test_a_failed_manual_deploy_sends_the_deployment_failed_notice(
    cli, initialised_home: Path, webhook: Webhook
) -> None:  # type: ignore[no-untyped-def]
    _issued_with_a_failing_reload(cli, initialised_home, webhook)

    result = cli("deploy", "web")

    assert result.exit_code == 1
    [notice] = webhook.of(DEPLOY_FAILED)
    assert notice["detail"]["CertificateName"] == "web"
    assert "reload command" in notice["detail"]["Error"]


def test_a_failed_manual_renewal_sends_the_renewal_failed_notice(
    cli, initialised_home: Path, webhook: Webhook
) -> None:  # type: ignore[no-untyped-def]
    _issued_with_a_failing_reload(cli, initialised_home, webhook)

    assert cli("renew", "web", "--force").exit_code == 1

    [notice] = webhook.received
    assert notice["detail"]["CertificateName"] == "web" and notice["detail"]["Revision"] == 2


def test_bad_input_sends_no_notice(cli, initialised_home: Path, webhook: Webhook) -> None:  # type: ignore[no-untyped-def]
    cli.ok("issue", "web", "-d", "web.example.com")
    _hook(initialised_home, webhook.url)

    assert cli("deploy", "web", "--target", "nowhere").exit_code == 2
    assert webhook.received == []


def test_a_failure_notice_a_command_could_not_send_is_sent_by_the_service(
    cli, initialised_home: Path, webhook: Webhook, cli_clock
) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from certman.scheduler.notify import Notifier
    from certman.scheduler.reconcile import Reconciler

    from tests.scheduler.conftest import runtime_for

    _issued_with_a_failing_reload(cli, initialised_home, webhook)
    webhook.fail = True
    assert cli("renew", "web", "--force").exit_code == 1
    assert webhook.received == [] and webhook.attempts == 1
    webhook.fail = False
    cli_clock.advance(timedelta(minutes=2))
    rt = runtime_for(initialised_home, cli_clock)
    Reconciler(rt, holder="serve", notifier=Notifier.from_config(rt)).tick()
    [notice] = webhook.received
    assert notice["detail"]["CertificateName"] == "web" and notice["detail"]["Revision"] == 2
