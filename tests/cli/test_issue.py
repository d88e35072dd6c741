"""`certman issue`: a certificate from the private CA, tracked and verifiable."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.cli.outcomes import assert_error, show
from tests.conftest import Cli


def exported(cli: Cli, name: str, out: Path) -> tuple[x509.Certificate, list[x509.Certificate]]:
    cli.ok("export", name, "--out", str(out))
    leaf = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((out / "chain.pem").read_bytes())
    return leaf, chain


def root_of(cli: Cli, ca: str = "default") -> x509.Certificate:
    view = json.loads(cli.ok("ca", "show", ca, "--json").stdout)
    return x509.load_pem_x509_certificate(view["root_certificate_pem"].encode())


def test_issue_reports_the_active_revision(initialised_home: Path, cli: Cli) -> None:
    result = cli.ok("issue", "web", "-d", "www.example.com")
    assert "web: revision 1 active" in result.stdout
    view = show(cli, "web")
    assert view["serial"] in result.stdout
    assert view["not_after"] in result.stdout


def test_issued_certificate_verifies_up_to_the_default_root(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    from cryptography.x509.verification import PolicyBuilder, Store

    cli.ok("issue", "web", "-d", "www.example.com", "-d", "api.example.com")
    leaf, chain = exported(cli, "web", tmp_path / "out")
    verifier = (
        PolicyBuilder()
        .store(Store([root_of(cli)]))
        .time(datetime.now(UTC))
        .build_server_verifier(x509.DNSName("api.example.com"))
    )
    path = verifier.verify(leaf, chain)
    assert len(path) == 3


def test_issued_certificate_carries_the_names_the_key_type_and_server_auth(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "-d", "192.0.2.10", "--key-type", "ec-p384")
    leaf, _ = exported(cli, "web", tmp_path / "out")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10")]
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp384r1"
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert show(cli, "web")["key_type"] == "ec-p384"


def test_issue_with_an_rsa_key(initialised_home: Path, cli: Cli, tmp_path: Path) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--key-type", "rsa-2048")
    leaf, _ = exported(cli, "web", tmp_path / "out")
    key = leaf.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048


def test_issue_stores_internationalised_names_as_a_labels(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "books", "-d", "bücher.example")
    assert show(cli, "books")["domains"] == ["xn--bcher-kva.example"]
    leaf, _ = exported(cli, "books", tmp_path / "out")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["xn--bcher-kva.example"]


def test_issue_honours_the_validity(initialised_home: Path, cli: Cli) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    cli.ok("issue", "web", "-d", "www.example.com", "--validity", "10d")
    not_after = datetime.fromisoformat(show(cli, "web")["not_after"])
    assert before + timedelta(days=10) <= not_after <= before + timedelta(days=10, seconds=5)


def test_issue_uses_the_configured_default_validity(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    assert show(cli, "web")["validity_seconds"] == 90 * 86400


def test_issue_honours_renew_before(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--renew-before", "30d")
    view = show(cli, "web")
    due = datetime.fromisoformat(view["renewal_due_at"])
    assert due == datetime.fromisoformat(view["not_after"]) - timedelta(days=30)


def test_issue_under_a_ca_with_permitted_domains(initialised_home: Path, cli: Cli) -> None:
    cli.ok("ca", "create", "corp", "--permitted-domain", "example.com")
    cli.ok("issue", "web", "--issuer", "corp", "-d", "www.example.com", "-d", "example.com")
    view = show(cli, "web")
    assert view["issuer"] == "corp"
    assert view["status"] == "active"


def test_issue_with_a_wildcard(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "wild", "-d", "*.example.com")
    assert show(cli, "wild")["domains"] == ["*.example.com"]


def test_issue_refuses_a_name_already_in_use(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    message = assert_error(cli("issue", "web", "-d", "other.example.com"), 2)
    assert "already exists" in message
    assert show(cli, "web")["domains"] == ["www.example.com"]


def test_issue_refuses_an_invalid_certificate_name(initialised_home: Path, cli: Cli) -> None:
    message = assert_error(cli("issue", "../web", "-d", "www.example.com"), 2)
    assert "'../web'" in message


def test_issue_without_a_domain_is_a_usage_error(initialised_home: Path, cli: Cli) -> None:
    result = cli("issue", "web")
    assert result.exit_code == 2
    assert "--domain" in result.stderr
    assert "Traceback" not in result.stderr


def test_issue_on_an_uninitialised_home_says_to_run_init(cli: Cli, home: Path) -> None:
    message = assert_error(cli("issue", "web", "-d", "www.example.com"), 1)
    assert "certman init" in message
    assert not home.exists()


def test_without_validity_a_ca_with_a_shorter_max_validity_gives_its_max_and_says_so(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("ca", "create", "short", "--max-validity", "30d")
    result = cli.ok("issue", "web", "-d", "www.example.com", "--issuer", "short")
    assert "validity 30d, the max_validity of CA 'short'" in result.stderr
    assert "[defaults] validity 90d" in result.stderr
    view = show(cli, "web")
    lifetime = datetime.fromisoformat(view["not_after"]) - datetime.fromisoformat(
        view["not_before"]
    )
    # not_before is backdated a little for clock skew
    assert timedelta(days=30) <= lifetime < timedelta(days=30, hours=2)


def test_an_explicit_validity_over_the_ca_max_is_still_refused(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("ca", "create", "short", "--max-validity", "30d")
    message = assert_error(
        cli("issue", "web", "-d", "www.example.com", "--issuer", "short", "--validity", "90d"), 2
    )
    assert "90d" in message and "30d" in message and "'short'" in message


def test_without_validity_a_ca_allowing_the_default_gives_the_default_silently(
    initialised_home: Path, cli: Cli
) -> None:
    result = cli.ok("issue", "web", "-d", "www.example.com")
    assert result.stderr == ""
    view = show(cli, "web")
    lifetime = datetime.fromisoformat(view["not_after"]) - datetime.fromisoformat(
        view["not_before"]
    )
    assert timedelta(days=90) <= lifetime < timedelta(days=90, hours=2)


def test_bulk_rows_without_validity_fit_the_ca_max_and_say_so(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("ca", "create", "short", "--max-validity", "30d")
    csv = tmp_path / "certs.csv"
    csv.write_text("a,a.example.com\nb,b.example.com,ec-p256,10d\n")
    result = cli.ok("bulk-issue", str(csv), "--issuer", "short")
    assert "rows without a validity get validity 30d" in result.stderr
    lifetimes = {
        n: datetime.fromisoformat(show(cli, n)["not_after"])
        - datetime.fromisoformat(show(cli, n)["not_before"])
        for n in ("a", "b")
    }
    assert timedelta(days=30) <= lifetimes["a"] < timedelta(days=30, hours=2)
    assert timedelta(days=10) <= lifetimes["b"] < timedelta(days=10, hours=2)
