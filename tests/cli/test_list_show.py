"""`certman list` and `certman show`: the fields operators and scripts rely on."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certman.clock import FrozenClock
from tests.cli.outcomes import assert_error, listed, show
from tests.conftest import Cli

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
REQUIRED = {
    "name",
    "domains",
    "issuer",
    "status",
    "key_type",
    "serial",
    "fingerprint_sha256",
    "not_before",
    "not_after",
    "renewal_due_at",
    "revision",
    "acm_arn",
    "source",
}


def leaf(cli: Cli, name: str, out: Path) -> x509.Certificate:
    cli.ok("export", name, "--out", str(out))
    return x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())


def check_view(view: dict[str, object], cert: x509.Certificate) -> None:
    assert view.keys() >= REQUIRED
    assert view["name"] == "web"
    assert view["domains"] == ["www.example.com", "xn--bcher-kva.example"]
    assert view["issuer"] == "default"
    assert view["status"] == "active"
    assert view["key_type"] == "ec-p256"
    assert view["serial"] == format(cert.serial_number, "x")
    assert re.fullmatch(r"[0-9a-f]+", str(view["serial"]))
    assert not str(view["serial"]).startswith("0")
    assert view["fingerprint_sha256"] == hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", str(view["fingerprint_sha256"]))
    for field in ("not_before", "not_after", "renewal_due_at"):
        assert ISO_UTC.match(str(view[field])), (field, view[field])
    assert datetime.fromisoformat(str(view["not_before"])) == cert.not_valid_before_utc
    assert datetime.fromisoformat(str(view["not_after"])) == cert.not_valid_after_utc
    assert view["revision"] == 1
    assert type(view["revision"]) is int
    assert view["acm_arn"] is None
    assert view["source"] == "managed"


@pytest.fixture
def web(initialised_home: Path, cli: Cli, tmp_path: Path) -> x509.Certificate:
    cli.ok("issue", "web", "-d", "www.example.com", "-d", "bücher.example")
    return leaf(cli, "web", tmp_path / "web")


def test_show_json_carries_every_documented_field(cli: Cli, web: x509.Certificate) -> None:
    check_view(show(cli, "web"), web)


def test_list_json_elements_carry_every_documented_field(cli: Cli, web: x509.Certificate) -> None:
    (view,) = listed(cli)
    check_view(view, web)


def test_show_json_lists_the_revisions(cli: Cli, web: x509.Certificate) -> None:
    (rev,) = show(cli, "web")["revisions"]
    assert rev["revision"] == 1
    assert rev["state"] == "active"
    assert rev["serial"] == format(web.serial_number, "x")


def test_renewal_due_at_is_two_thirds_into_the_lifetime(cli: Cli, web: x509.Certificate) -> None:
    view = show(cli, "web")
    lifetime = web.not_valid_after_utc - web.not_valid_before_utc
    expected = web.not_valid_before_utc + timedelta(seconds=int(lifetime.total_seconds() * 2 / 3))
    assert datetime.fromisoformat(view["renewal_due_at"]) == expected


def test_show_prints_a_readable_summary(cli: Cli, web: x509.Certificate) -> None:
    out = cli.ok("show", "web").stdout
    assert "xn--bcher-kva.example" in out
    assert format(web.serial_number, "x") in out
    assert "revisions:" in out


def test_list_prints_a_table_soonest_expiry_first(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "late", "-d", "late.example.com", "--validity", "90d")
    cli.ok("issue", "soon", "-d", "soon.example.com", "--validity", "10d")
    lines = cli.ok("list").stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATUS", "ISSUER"]
    assert [line.split()[0] for line in lines[1:]] == ["soon", "late"]
    assert [v["name"] for v in listed(cli)] == ["soon", "late"]


def test_list_of_an_empty_inventory(initialised_home: Path, cli: Cli) -> None:
    assert cli.ok("list").stdout.strip() == "No certificates."
    assert listed(cli) == []


def test_list_expiring_shows_only_those_expiring_within_the_window(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "soon", "-d", "soon.example.com", "--validity", "10d")
    cli.ok("issue", "late", "-d", "late.example.com", "--validity", "90d")
    assert [v["name"] for v in listed(cli, "--expiring", "30d")] == ["soon"]
    assert [v["name"] for v in listed(cli, "--expiring", "91d")] == ["soon", "late"]
    assert listed(cli, "--expiring", "1d") == []


def test_list_status_filters(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "kept", "-d", "kept.example.com")
    cli.ok("issue", "gone", "-d", "gone.example.com")
    cli.ok("revoke", "gone")
    assert [v["name"] for v in listed(cli, "--status", "active")] == ["kept"]
    assert [v["name"] for v in listed(cli, "--status", "revoked")] == ["gone"]
    assert listed(cli, "--status", "failed") == []
    assert listed(cli, "--status", "expired") == []


def test_an_active_certificate_past_not_after_is_listed_as_expired(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    cli.ok("issue", "short", "-d", "short.example.com", "--validity", "2d")
    cli.ok("issue", "long", "-d", "long.example.com", "--validity", "30d")
    cli_clock.advance(timedelta(days=3))
    assert [v["name"] for v in listed(cli, "--status", "expired")] == ["short"]
    assert [v["name"] for v in listed(cli, "--status", "active")] == ["long"]
    assert show(cli, "short")["status"] == "expired"
    assert [v["name"] for v in listed(cli, "--expiring", "1d")] == ["short"]


def test_a_failed_certificate_is_listed_as_failed(
    initialised_home: Path, cli: Cli, fake_issuers: None
) -> None:
    (initialised_home / "certman.toml").write_text(
        '[issuers.broken]\ntype = "fake"\nfailure = "permanent"\n'
    )
    assert_error(cli("issue", "bad", "-d", "bad.example.com", "--issuer", "broken"), 1)
    cli.ok("issue", "good", "-d", "good.example.com")
    (view,) = listed(cli, "--status", "failed")
    assert view["name"] == "bad"
    assert view["revision"] == 0
    assert view["serial"] is None
    assert "fake issuer refused" in view["last_error"]


def test_list_refuses_an_unknown_status(initialised_home: Path, cli: Cli) -> None:
    message = assert_error(cli("list", "--status", "sleeping"), 2)
    assert "'sleeping'" in message
    assert "active" in message


def test_list_refuses_a_bad_expiring_window(initialised_home: Path, cli: Cli) -> None:
    message = assert_error(cli("list", "--expiring", "soon"), 2)
    assert "--expiring" in message


def test_show_reports_times_in_utc(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    view = show(cli, "web")
    assert datetime.fromisoformat(view["not_after"]).tzinfo == UTC
