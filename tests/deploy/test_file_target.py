"""The `file` target against a real nginx: deploy, verify by handshake, roll back on failure."""

from __future__ import annotations

import contextlib
import grp
import json
import pwd
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certman.deploy.probe import Endpoint, served_serial
from tests.components.nginx import NGINX, Nginx, free_port
from tests.conftest import Cli

HANDSHAKES = 20


def add_target(home: Path, name: str, body: str) -> None:
    config = home / "certman.toml"
    config.write_text(config.read_text() + f"\n[targets.{name}]\n{body}\n")


def set_in_config(home: Path, old: str, new: str) -> None:
    config = home / "certman.toml"
    assert old in config.read_text()
    config.write_text(config.read_text().replace(old, new))


def file_target(
    nginx: Nginx,
    reload_command: str | None = None,
    probe: str | None = None,
    timeout: str = "10s",
    extra: str = "",
) -> str:
    return "\n".join(
        [
            'type = "file"',
            f'fullchain_path = "{nginx.fullchain}"',
            f'key_path = "{nginx.key}"',
            f'reload_command = "{reload_command or nginx.reload_command}"',
            f'probe = "{probe or nginx.endpoint}"',
            f'probe_timeout = "{timeout}"',
            extra,
        ]
    )


def served(nginx: Nginx) -> set[str]:
    """The serials of HANDSHAKES new connections, once no reload is in progress."""
    nginx.wait_settled()
    endpoint = Endpoint.parse(nginx.endpoint, where="test")
    return {served_serial(endpoint, "www.example.com") for _ in range(HANDSHAKES)}


def serial_on_disk(nginx: Nginx) -> str:
    return format(
        x509.load_pem_x509_certificates(nginx.fullchain.read_bytes())[0].serial_number, "x"
    )


def show(cli: Cli, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(cli.ok("show", name, "--json").stdout)


def audit_actions(cli: Cli) -> list[str]:
    return [e["action"] for e in json.loads(cli.ok("audit", "list", "--json").stdout)]


def test_issue_deploys_files_and_nginx_serves_the_new_serial(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    view = show(cli, "site")
    assert served(nginx) == {view["serial"]}
    assert serial_on_disk(nginx) == view["serial"]
    assert stat.S_IMODE(nginx.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(nginx.fullchain.stat().st_mode) == 0o644
    assert view["revisions"][0]["state"] == "active"


def test_renewal_redeploys_and_the_new_serial_is_served(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    first = show(cli, "site")["serial"]
    cli.ok("renew", "site", "--force")
    second = show(cli, "site")["serial"]
    assert second != first
    assert served(nginx) == {second}


def test_failed_reload_restores_previous_files_and_nginx_keeps_serving_them(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    before = show(cli, "site")
    key_before = nginx.key.read_bytes()
    workers_before = nginx.wait_settled()
    set_in_config(initialised_home, nginx.reload_command, "false")

    result = cli("renew", "site", "--force")

    assert result.exit_code == 1
    assert "reload command" in result.stderr and "Traceback" not in result.stderr
    assert serial_on_disk(nginx) == before["serial"]
    assert nginx.key.read_bytes() == key_before
    assert served(nginx) == {before["serial"]}
    assert nginx.wait_settled() == workers_before, "`false` never reloaded nginx"
    after = show(cli, "site")
    assert after["serial"] == before["serial"] and after["revision"] == 1
    assert [r["state"] for r in after["revisions"]] == ["active", "failed"]


def test_a_reload_that_loads_the_new_files_and_fails_is_undone_by_reloading_the_old_ones(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    """nginx really loads the new files, the command still fails: certman puts the previous
    files back and runs the reload again, so nginx serves the previous certificate."""
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    before = show(cli, "site")
    workers_before = nginx.wait_settled()
    set_in_config(initialised_home, nginx.reload_command, f"{nginx.reload_command} && false")

    result = cli("renew", "site", "--force")

    assert result.exit_code == 1
    assert serial_on_disk(nginx) == before["serial"]
    assert served(nginx) == {before["serial"]}
    assert nginx.wait_settled() != workers_before, "nginx was reloaded (twice)"
    # Both reloads "failed" (exit 1), each said once, in flat sentences; nginx's
    # "[notice] signal process started" is no reason and is not quoted.
    assert result.stderr.strip() == (
        "error: Rollout of site revision 2 failed: The reload command of target 'web' failed "
        "(exit 1). Rollback incomplete for target web: the previous files are back in place, "
        "but the reload command failed (exit 1) again; reload the server by hand."
    )
    assert [r["state"] for r in show(cli, "site")["revisions"]] == ["active", "failed"]


def test_a_refused_reload_is_explained_by_the_servers_own_error_line(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    missing = nginx.prefix / "missing.conf"
    # nginx -t prints "[emerg] open() ... failed", then "configuration file ... test failed"
    test_then_reload = f"{NGINX} -t -p {nginx.prefix} -c {missing} && {nginx.reload_command}"
    set_in_config(initialised_home, nginx.reload_command, test_then_reload)

    result = cli("renew", "site", "--force")

    assert result.exit_code == 1
    assert (
        f"The reload command of target 'web' failed (exit 1: [emerg] open() "
        f'"{missing}" failed (2: No such file or directory)).' in result.stderr
    )


def test_probe_that_never_sees_the_new_serial_rolls_the_files_back(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    before = show(cli, "site")
    # the reload still "works" but nothing reloads nginx: the probe keeps seeing the old serial
    set_in_config(initialised_home, nginx.reload_command, "true")
    set_in_config(initialised_home, 'probe_timeout = "10s"', 'probe_timeout = "2s"')
    result = cli("renew", "site", "--force")
    assert result.exit_code == 1
    assert "did not verify" in result.stderr
    assert f"last seen: serial {before['serial']}" in result.stderr
    assert serial_on_disk(nginx) == before["serial"]
    audit = json.loads(cli.ok("audit", "list", "--json").stdout)
    assert audit[-1]["action"] == "certificate.failed"
    assert "did not verify" in audit[-1]["details"]["error"]


def test_unreachable_probe_fails_a_first_issuance_and_switches_nothing(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    """No server may run before the first certificate exists: the probe is not asked
    beforehand, the verify after the deploy fails, and the files go back."""
    placeholder = nginx.fullchain.read_bytes()
    dead = f"127.0.0.1:{free_port()}"
    add_target(initialised_home, "web", file_target(nginx, probe=dead, timeout="2s"))
    result = cli("issue", "site", "-d", "www.example.com", "--target", "web")
    assert result.exit_code == 1
    assert "no TLS handshake" in result.stderr
    assert nginx.fullchain.read_bytes() == placeholder


def test_unreachable_probe_is_refused_before_a_renewal_switches_anything(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    files_before = (nginx.fullchain.read_bytes(), nginx.key.read_bytes())
    set_in_config(
        initialised_home, f'probe = "{nginx.endpoint}"', f'probe = "127.0.0.1:{free_port()}"'
    )

    result = cli("renew", "site", "--force")

    # a server that is down is a failed operation (exit 1), not bad input
    assert result.exit_code == 1
    assert "Nothing answers TLS at 127.0.0.1:" in result.stderr
    assert "Nothing was switched" in result.stderr
    assert (nginx.fullchain.read_bytes(), nginx.key.read_bytes()) == files_before
    view = show(cli, "site")
    assert view["revision"] == 1 and view["status"] == "active"
    # retryable: the service backs off and tries again instead of giving the certificate up
    assert view["revisions"][1]["state"] == "archived"
    assert view["next_attempt_at"] is not None
    assert audit_actions(cli)[-1] == "certificate.failed"

    result = cli("deploy", "site")
    assert result.exit_code == 1 and "Nothing answers TLS" in result.stderr
    assert audit_actions(cli)[-1] == "deploy.failed"
    assert (nginx.fullchain.read_bytes(), nginx.key.read_bytes()) == files_before


def test_target_with_missing_directory_is_refused_before_anything_is_written(
    cli: Cli, initialised_home: Path, tmp_path: Path
) -> None:
    add_target(initialised_home, "web", f'type = "file"\ncert_path = "{tmp_path}/nope/cert.pem"')
    result = cli("issue", "site", "-d", "www.example.com", "--target", "web")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "nope" in result.stderr
    assert json.loads(cli.ok("list", "--json").stdout) == []


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[None]:
    """A directory nobody may write to, root included (chattr +i)."""
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode:
        pytest.skip("this filesystem has no immutable attribute (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_target_with_unwritable_directory_is_refused_before_anything_is_written(
    cli: Cli, initialised_home: Path, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    add_target(initialised_home, "web", f'type = "file"\ncert_path = "{locked}/cert.pem"')
    with immutable(locked):
        result = cli("issue", "site", "-d", "www.example.com", "--target", "web")
    assert result.exit_code == 2
    assert f"({locked}) for target 'web' is not writable" in result.stderr
    assert json.loads(cli.ok("list", "--json").stdout) == []
    assert list(locked.iterdir()) == []


def test_owner_is_set_on_every_file(cli: Cli, initialised_home: Path, nginx: Nginx) -> None:
    nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    add_target(initialised_home, "web", file_target(nginx, extra='owner = "nobody:nogroup"'))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    for path in (nginx.fullchain, nginx.key):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (nobody, nogroup)
    assert stat.S_IMODE(nginx.key.stat().st_mode) == 0o600
    assert served(nginx) == {show(cli, "site")["serial"]}  # the nginx master (root) reads them


@pytest.mark.parametrize(
    ("owner", "named"),
    [("nosuchuser:nogroup", "user 'nosuchuser'"), ("nobody:nosuchgroup", "group 'nosuchgroup'")],
)
def test_an_owner_that_does_not_exist_is_refused_before_anything_is_issued(
    cli: Cli, initialised_home: Path, nginx: Nginx, owner: str, named: str
) -> None:
    placeholder = nginx.fullchain.read_bytes()
    add_target(initialised_home, "web", file_target(nginx, extra=f'owner = "{owner}"'))
    result = cli("issue", "site", "-d", "www.example.com", "--target", "web")
    assert result.exit_code == 2
    assert named in result.stderr and "[targets.web]" in result.stderr
    assert json.loads(cli.ok("list", "--json").stdout) == []
    assert nginx.fullchain.read_bytes() == placeholder


def test_unknown_target_is_refused(cli: Cli, initialised_home: Path) -> None:
    result = cli("issue", "site", "-d", "www.example.com", "--target", "nowhere")
    assert result.exit_code == 2
    assert "Unknown target 'nowhere'" in result.stderr
    assert json.loads(cli.ok("list", "--json").stdout) == []


def test_deploy_command_rolls_out_the_active_revision(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    cli.ok("issue", "site", "-d", "www.example.com")
    add_target(initialised_home, "web", file_target(nginx))
    placeholder = serial_on_disk(nginx)
    plan = json.loads(cli.ok("deploy", "plan", "site", "--target", "web", "--json").stdout)
    (step,) = plan["steps"]
    serial = show(cli, "site")["serial"]
    assert (step["target"], step["current_serial"], step["new_serial"]) == (
        "web",
        placeholder,
        serial,
    )
    assert step["current_not_after"]
    human = cli.ok("deploy", "plan", "site", "--target", "web").stdout
    assert f"{placeholder} (until {step['current_not_after']}) -> {serial}" in human
    assert serial_on_disk(nginx) == placeholder, "a plan changes nothing"
    cli.ok("deploy", "site", "--target", "web")
    assert served(nginx) == {serial}
    assert audit_actions(cli)[-1] == "certificate.deploy"


def test_deploy_without_any_target_is_refused(cli: Cli, initialised_home: Path) -> None:
    cli.ok("issue", "site", "-d", "www.example.com")
    result = cli("deploy", "site")
    assert result.exit_code == 2 and "has no targets" in result.stderr


def test_an_unknown_canary_is_refused_and_recorded_nowhere(
    cli: Cli, initialised_home: Path, nginx: Nginx
) -> None:
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    events = audit_actions(cli)
    result = cli("deploy", "site", "--canary", "nope")
    assert result.exit_code == 2
    assert "--canary 'nope' is not among the units: web." in result.stderr
    assert audit_actions(cli) == events


# --- two servers: canary first, later waves, rollback of a verified canary ------------------


def two_servers(cli: Cli, home: Path, nginx_factory: Callable[[], Nginx]) -> tuple[Nginx, Nginx]:
    first, second = nginx_factory(), nginx_factory()
    add_target(home, "web1", file_target(first))
    add_target(home, "web2", file_target(second, timeout="2s"))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web1", "--target", "web2")
    return first, second


def test_a_failure_in_a_later_wave_rolls_back_the_verified_canary(
    cli: Cli, initialised_home: Path, nginx_factory: Callable[[], Nginx]
) -> None:
    first, second = two_servers(cli, initialised_home, nginx_factory)
    before = show(cli, "site")["serial"]
    assert served(first) == served(second) == {before}
    set_in_config(initialised_home, second.reload_command, "true")  # web2 never reloads

    result = cli("renew", "site", "--force")

    assert result.exit_code == 1
    assert "Target web2 did not verify" in result.stderr
    assert "went back to revision 1" in result.stderr
    # web1 was switched and verified in wave 1; it serves revision 1 again
    assert serial_on_disk(first) == serial_on_disk(second) == before
    assert served(first) == {before}


def test_the_canary_named_by_the_operator_goes_first_and_alone(
    cli: Cli, initialised_home: Path, nginx_factory: Callable[[], Nginx]
) -> None:
    first, second = nginx_factory(), nginx_factory()
    add_target(initialised_home, "web1", file_target(first))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web1")
    serial = show(cli, "site")["serial"]
    # web2 is new and cannot verify: its "reload" leaves nginx serving the placeholder
    add_target(initialised_home, "web2", file_target(second, reload_command="true", timeout="2s"))
    placeholder = second.fullchain.read_bytes()
    workers = first.wait_settled()
    both = ("--target", "web1", "--target", "web2")

    result = cli("deploy", "site", *both, "--canary", "web2")

    assert result.exit_code == 1
    assert "Target web2 did not verify" in result.stderr
    assert first.wait_settled() == workers, "web1 was never deployed: its canary failed first"
    assert second.fullchain.read_bytes() == placeholder

    set_in_config(
        initialised_home, 'reload_command = "true"', f'reload_command = "{second.reload_command}"'
    )
    cli.ok("deploy", "site", *both, "--canary", "web2")
    assert served(first) == served(second) == {serial}
