"""The `file` target against a real nginx: deploy, verify by handshake, roll back on failure."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography import x509

from certman.deploy.probe import Endpoint, served_serial, wait_for_serial
from tests.components.nginx import Nginx, free_port


def add_target(home: Path, name: str, body: str) -> None:
    config = home / "certman.toml"
    config.write_text(config.read_text() + f"\n[targets.{name}]\n{body}\n")


def file_target(nginx: Nginx, reload_command: str | None = None, probe: str | None = None) -> str:
    return "\n".join(
        [
            'type = "file"',
            f'fullchain_path = "{nginx.fullchain}"',
            f'key_path = "{nginx.key}"',
            f'reload_command = "{reload_command or nginx.reload_command}"',
            f'probe = "{probe or nginx.endpoint}"',
            'probe_timeout = "10s"',
        ]
    )


def serving(nginx: Nginx, expected: str | None = None) -> str:
    """What nginx serves; with ``expected``, give old workers of a reload a moment to exit."""
    endpoint = Endpoint.parse(nginx.endpoint, where="test")
    if expected is not None:
        wait_for_serial(endpoint, "www.example.com", expected, timeout=10, confirmations=5)
    return served_serial(endpoint, "www.example.com")


def serial_on_disk(nginx: Nginx) -> str:
    return format(
        x509.load_pem_x509_certificates(nginx.fullchain.read_bytes())[0].serial_number, "x"
    )


def show(cli, name: str) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(cli.ok("show", name, "--json").stdout)


def test_issue_deploys_files_and_nginx_serves_the_new_serial(
    cli, initialised_home: Path, nginx: Nginx
) -> None:  # type: ignore[no-untyped-def]
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    view = show(cli, "site")
    assert serving(nginx, view["serial"]) == view["serial"]
    assert serial_on_disk(nginx) == view["serial"]
    assert stat.S_IMODE(nginx.key.stat().st_mode) == 0o600
    assert view["revisions"][0]["state"] == "active"


def test_renewal_redeploys_and_the_new_serial_is_served(
    cli, initialised_home: Path, nginx: Nginx
) -> None:  # type: ignore[no-untyped-def]
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    first = show(cli, "site")["serial"]
    cli.ok("renew", "site", "--force")
    second = show(cli, "site")["serial"]
    assert second != first
    assert serving(nginx, second) == second


def test_failed_reload_restores_previous_files_and_nginx_keeps_serving_them(
    cli, initialised_home: Path, nginx: Nginx
) -> None:  # type: ignore[no-untyped-def]
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    before = show(cli, "site")
    key_before = nginx.key.read_bytes()
    config = initialised_home / "certman.toml"
    config.write_text(config.read_text().replace(nginx.reload_command, "false"))

    result = cli("renew", "site", "--force")

    assert result.exit_code == 1
    assert "reload command" in result.stderr and "Traceback" not in result.stderr
    assert serial_on_disk(nginx) == before["serial"]
    assert nginx.key.read_bytes() == key_before
    assert serving(nginx, before["serial"]) == before["serial"]
    after = show(cli, "site")
    assert after["serial"] == before["serial"] and after["revision"] == 1
    assert [r["state"] for r in after["revisions"]] == ["active", "failed"]


def test_probe_that_never_sees_the_new_serial_rolls_the_files_back(
    cli, initialised_home: Path, nginx: Nginx
) -> None:  # type: ignore[no-untyped-def]
    add_target(initialised_home, "web", file_target(nginx))
    cli.ok("issue", "site", "-d", "www.example.com", "--target", "web")
    before = show(cli, "site")
    config = initialised_home / "certman.toml"
    # the reload still "works" but nothing reloads nginx: the probe keeps seeing the old serial
    config.write_text(
        config.read_text()
        .replace(nginx.reload_command, "true")
        .replace('probe_timeout = "10s"', 'probe_timeout = "1s"')
    )
    result = cli("renew", "site", "--force")
    assert result.exit_code == 1
    assert "did not verify" in result.stderr
    assert serial_on_disk(nginx) == before["serial"]
    audit = json.loads(cli.ok("audit", "list", "--json").stdout)
    assert audit[-1]["action"] == "certificate.failed"
    assert "did not verify" in audit[-1]["details"]["error"]


def test_unreachable_probe_fails_the_rollout_and_switches_nothing(
    cli, initialised_home: Path, nginx: Nginx
) -> None:  # type: ignore[no-untyped-def]
    placeholder = nginx.fullchain.read_bytes()
    dead = f"127.0.0.1:{free_port()}"
    add_target(initialised_home, "web", file_target(nginx, probe=dead).replace('"10s"', '"1s"'))
    result = cli("issue", "site", "-d", "www.example.com", "--target", "web")
    assert result.exit_code == 1
    assert "no TLS handshake" in result.stderr
    assert nginx.fullchain.read_bytes() == placeholder


def test_target_with_missing_directory_is_refused_before_anything_is_written(
    cli, initialised_home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    add_target(initialised_home, "web", f'type = "file"\ncert_path = "{tmp_path}/nope/cert.pem"')
    result = cli("issue", "site", "-d", "www.example.com", "--target", "web")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "nope" in result.stderr
    assert json.loads(cli.ok("list", "--json").stdout) == []


def test_unknown_target_is_refused(cli, initialised_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("issue", "site", "-d", "www.example.com", "--target", "nowhere")
    assert result.exit_code == 2
    assert "Unknown target 'nowhere'" in result.stderr
    assert json.loads(cli.ok("list", "--json").stdout) == []


def test_deploy_command_rolls_out_the_active_revision(
    cli, initialised_home: Path, nginx: Nginx
) -> None:  # type: ignore[no-untyped-def]
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
    assert serial_on_disk(nginx) == placeholder, "a plan changes nothing"
    cli.ok("deploy", "site", "--target", "web")
    assert serving(nginx, serial) == serial
    audit = json.loads(cli.ok("audit", "list", "--json").stdout)
    assert audit[-1]["action"] == "certificate.deploy"


def test_deploy_without_any_target_is_refused(cli, initialised_home: Path) -> None:  # type: ignore[no-untyped-def]
    cli.ok("issue", "site", "-d", "www.example.com")
    result = cli("deploy", "site")
    assert result.exit_code == 2 and "has no targets" in result.stderr
