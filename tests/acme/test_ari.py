"""ARI (RFC 9773): the certID format, and renewal times and replaces against an ARI server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certman.acme_client.ari import cert_id, serial_der_bytes
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certman.service.lifecycle import Lifecycle
from certman.service.renewal import pick_renewal_time, renewal_due_at
from tests.acme.ari_server import AriServer, Window
from tests.acme.conftest import AcmeHome


def certificate_with(aki: bytes, serial: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.example")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.AuthorityKeyIdentifier(
                key_identifier=aki, authority_cert_issuer=None, authority_cert_serial_number=None
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_cert_id_matches_the_rfc_9773_example() -> None:
    # RFC 9773 section 4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
    # serial 00:87:65:43:21 -> "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert cert_id(certificate_with(aki, 0x87654321)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_serial_bytes_are_der_integer_contents() -> None:
    assert serial_der_bytes(0x7F) == b"\x7f"
    assert serial_der_bytes(0x80) == b"\x00\x80"  # the sign bit needs a leading zero
    assert serial_der_bytes(0x0100) == b"\x01\x00"


def test_cert_id_has_no_base64_padding() -> None:
    identifier = cert_id(certificate_with(b"\x01\x02\x03\x04", 0x0102))
    assert identifier == "AQIDBA.AQI" and "=" not in identifier


def test_the_renewal_time_is_inside_the_window() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    end = start + timedelta(hours=6)
    picks = {pick_renewal_time(start, end) for _ in range(50)}
    assert all(start <= p <= end and p.microsecond == 0 for p in picks)
    assert len(picks) > 1, "the point is random, so many clients do not renew at once"


def window_from_now(start_days: float, end_days: float, retry_after: int = 3600) -> Window:
    now = datetime.now(UTC).replace(microsecond=0)
    return Window(
        start=now + timedelta(days=start_days),
        end=now + timedelta(days=end_days),
        retry_after=retry_after,
    )


def test_renewal_due_follows_the_servers_window(acme_home: AcmeHome, ari: AriServer) -> None:
    ari.window = window_from_now(10, 12)
    acme_home.configure(directory=ari.directory_url)
    assert acme_home.issue("web", "ari.example.com").exit_code == 0
    acme_home.verified("web", "ari.example.com")
    cert = acme_home.certificate("web")
    (rev,) = acme_home.revisions("web")
    assert cert is not None and cert.renewal_due_at is not None and rev.certificate_pem
    assert ari.window.start <= cert.renewal_due_at <= ari.window.end
    assert ari.log.renewal_info_paths == [cert_id(rev.certificate_pem.encode())]


def test_a_renewal_order_carries_replaces(acme_home: AcmeHome, ari: AriServer) -> None:
    ari.window = window_from_now(10, 12)
    acme_home.configure(directory=ari.directory_url)
    assert acme_home.issue("web", "replace.example.com").exit_code == 0
    assert acme_home.cli("renew", "web", "--force").exit_code == 0
    acme_home.verified("web", "replace.example.com")
    first, _ = acme_home.revisions("web")
    assert first.certificate_pem
    assert "replaces" not in ari.log.new_orders[0]
    assert ari.log.new_orders[-1]["replaces"] == cert_id(first.certificate_pem.encode())


def test_a_window_in_the_past_makes_the_certificate_due_now(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    ari.window = window_from_now(-2, -1)  # e.g. the CA plans to revoke it
    acme_home.configure(directory=ari.directory_url)
    assert acme_home.issue("web", "revoked-soon.example.com").exit_code == 0
    acme_home.verified("web", "revoked-soon.example.com")
    rt = acme_home.runtime()
    assert Lifecycle(rt).due() == ["web"]


def test_without_ari_the_default_renewal_time_applies(acme_home: AcmeHome) -> None:
    acme_home.configure()  # Pebble 2.4 itself offers no renewalInfo
    assert acme_home.issue("web", "plain.example.com").exit_code == 0
    acme_home.verified("web", "plain.example.com")
    cert = acme_home.certificate("web")
    assert cert is not None and cert.not_before and cert.not_after
    assert cert.renewal_due_at == renewal_due_at(
        not_before=cert.not_before, not_after=cert.not_after, renew_before=None
    )


def test_a_failing_renewal_info_falls_back_to_the_default(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    ari.window = None  # the ARI endpoint answers 404
    acme_home.configure(directory=ari.directory_url)
    assert acme_home.issue("web", "no-window.example.com").exit_code == 0
    acme_home.verified("web", "no-window.example.com")
    cert = acme_home.certificate("web")
    assert cert is not None and cert.not_before and cert.not_after
    assert cert.renewal_due_at == renewal_due_at(
        not_before=cert.not_before, not_after=cert.not_after, renew_before=None
    )
