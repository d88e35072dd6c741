"""`certman ca export`, `certman delete` and `certman archive get`, with their refusals."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.verification import PolicyBuilder, Store

from certman.archive import LocalArchiveStore
from certman.cli.main import app
from tests.cli.outcomes import assert_error, listed, show
from tests.conftest import Cli
from tests.homestate import assert_unchanged, snapshot_home


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def audit(cli: Cli, action: str) -> list[dict[str, object]]:
    events = json.loads(cli.ok("audit", "list", "--json").stdout)
    return [e for e in events if e["action"] == action]


def refused(cli: Cli, home: Path, *args: str, exit_code: int = 2) -> str:
    before = snapshot_home(home)
    message = assert_error(cli(*args), exit_code)
    assert_unchanged(before, home)
    return message


# --- ca export -------------------------------------------------------------------------


def test_ca_export_writes_the_root_that_verifies_issued_leaves(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("export", "web", "--out", str(tmp_path / "web"))
    root_file, chain_file = tmp_path / "root.pem", tmp_path / "chain.pem"
    assert "wrote" in cli.ok("ca", "export", "default", "--out", str(root_file)).stdout
    cli.ok("ca", "export", "default", "--chain", "--out", str(chain_file))
    view = json.loads(cli.ok("ca", "show", "default", "--json").stdout)
    assert root_file.read_text() == view["root_certificate_pem"]
    assert mode(root_file) == 0o644
    root = x509.load_pem_x509_certificate(root_file.read_bytes())
    chain = x509.load_pem_x509_certificates(chain_file.read_bytes())
    assert [c.subject for c in chain] == [
        x509.load_pem_x509_certificate(view["intermediate_certificate_pem"].encode()).subject,
        root.subject,
    ]
    leaf = x509.load_pem_x509_certificate((tmp_path / "web" / "cert.pem").read_bytes())
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(datetime.now(UTC))
        .build_server_verifier(x509.DNSName("www.example.com"))
    )
    assert len(verifier.verify(leaf, chain[:1])) == 3
    assert [e["details"]["certificate"] for e in audit(cli, "ca.export")] == ["root", "chain"]  # type: ignore[index]


def test_ca_export_intermediate(initialised_home: Path, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "intermediate.pem"
    cli.ok("ca", "export", "default", "--intermediate", "--out", str(out))
    view = json.loads(cli.ok("ca", "show", "default", "--json").stdout)
    assert out.read_text() == view["intermediate_certificate_pem"]


def test_ca_export_refuses_an_existing_file_without_force(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "root.pem"
    out.write_text("mine\n")
    message = refused(cli, initialised_home, "ca", "export", "default", "--out", str(out))
    assert str(out) in message and "--force" in message
    assert out.read_text() == "mine\n"
    cli.ok("ca", "export", "default", "--out", str(out), "--force")
    assert out.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_ca_export_refusals(initialised_home: Path, cli: Cli, tmp_path: Path) -> None:
    out = str(tmp_path / "root.pem")
    assert "Unknown CA 'nope'" in refused(
        cli, initialised_home, "ca", "export", "nope", "--out", out
    )
    message = refused(
        cli, initialised_home, "ca", "export", "default", "--intermediate", "--chain", "--out", out
    )
    assert "not both" in message
    missing = str(tmp_path / "no" / "root.pem")
    assert "does not exist" in refused(
        cli, initialised_home, "ca", "export", "default", "--out", missing
    )
    assert not Path(out).exists()


# --- delete ----------------------------------------------------------------------------


def test_delete_stops_tracking_and_keeps_archive_audit_and_revocations(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("renew", "web", "--force")
    serials = [r["serial"] for r in show(cli, "web")["revisions"]]
    cli.ok("revoke", "web", "--reason", "superseded")
    store = LocalArchiveStore(initialised_home / "archive")
    bundles = [store.path_of(location) for location in store.list("web/")]
    assert len(bundles) == 2
    contents = [b.read_bytes() for b in bundles]

    result = cli.ok("delete", "web", "--yes")
    assert "web is no longer tracked" in result.stdout and "2 archived bundles" in result.stdout
    assert listed(cli) == []
    assert_error(cli("show", "web"), 2)
    assert [store.path_of(loc).read_bytes() for loc in store.list("web/")] == contents
    (event,) = audit(cli, "certificate.delete")
    assert [r["serial"] for r in event["details"]["revisions"]] == serials  # type: ignore[index]
    assert len(audit(cli, "certificate.issue")) == 1  # the history stays
    cli.ok("audit", "verify")
    crl_path = tmp_path / "crl.pem"
    cli.ok("ca", "crl", "default", "--out", str(crl_path))
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert [format(r.serial_number, "x") for r in crl] == [serials[-1]]
    # nothing left to renew
    assert cli.ok("renew", "--due").stdout.strip() == "Nothing is due."


def test_delete_asks_first_and_a_no_changes_nothing(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    before = snapshot_home(initialised_home)
    result = cli.runner.invoke(
        app,
        ["--home", str(initialised_home), "delete", "web"],
        input="n\n",
    )
    assert result.exit_code == 1
    assert "Stop tracking web?" in result.stdout
    assert_unchanged(before, initialised_home)
    result = cli.runner.invoke(
        app,
        ["--home", str(initialised_home), "delete", "web"],
        input="y\n",
    )
    assert result.exit_code == 0
    assert listed(cli) == []


def test_delete_refuses_an_unknown_name(initialised_home: Path, cli: Cli) -> None:
    assert "'nope'" in refused(cli, initialised_home, "delete", "nope", "--yes")


def test_delete_refuses_a_deployed_certificate_unless_forced(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    config = initialised_home / "certman.toml"
    config.write_text(
        config.read_text()
        + f'\n[targets.site]\ntype = "file"\nfullchain_path = "{tmp_path / "fullchain.pem"}"\n'
        + f'key_path = "{tmp_path / "privkey.pem"}"\nreload_command = "true"\n'
    )
    cli.ok("issue", "web", "-d", "www.example.com", "--target", "site")
    message = refused(cli, initialised_home, "delete", "web", "--yes")
    assert "deployed to site" in message and "--force" in message
    result = cli.ok("delete", "web", "--yes", "--force")
    assert "may still be deployed to site" in result.stdout
    assert (tmp_path / "fullchain.pem").exists()  # delete does not undeploy
    assert listed(cli) == []


def test_delete_refuses_a_revision_in_flight_unless_forced(
    initialised_home: Path, cli: Cli
) -> None:
    from datetime import timedelta

    from certman.config import load_config
    from certman.models import KeyType
    from certman.service.lifecycle import IssueSpec, Lifecycle
    from certman.service.runtime import Runtime

    rt = Runtime(config=load_config(initialised_home, initialised_home / "certman.toml"))
    Lifecycle(rt).plan(
        IssueSpec(
            name="half",
            domains=("half.example.com",),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=30),
        )
    )
    rt.engine.dispose()
    message = refused(cli, initialised_home, "delete", "half", "--yes")
    assert "in flight" in message and "--force" in message
    cli.ok("delete", "half", "--yes", "--force")
    assert listed(cli) == []


def test_a_deleted_name_with_archived_bundles_cannot_be_issued_again(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("delete", "web", "--yes")
    message = refused(cli, initialised_home, "issue", "web", "-d", "www.example.com")
    assert "'web'" in message and "archive" in message
    csv = tmp_path / "certs.csv"
    csv.write_text("other,other.example.com\nweb,www.example.com\n")
    refused(cli, initialised_home, "bulk-issue", str(csv))
    cli.ok("issue", "web2", "-d", "www.example.com")


# --- archive get -----------------------------------------------------------------------


def test_archive_get_restores_the_active_revision_without_the_key(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("export", "web", "--out", str(tmp_path / "export"))
    out = tmp_path / "restored"
    result = cli.ok("archive", "get", "web", "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["cert.pem", "chain.pem", "fullchain.pem"]
    assert "privkey.pem" not in result.stdout
    for name in ("cert.pem", "chain.pem", "fullchain.pem"):
        assert (out / name).read_bytes() == (tmp_path / "export" / name).read_bytes()
    (event,) = audit(cli, "certificate.archive_get")
    assert event["details"]["with_key"] is False  # type: ignore[index]


def test_archive_get_an_older_revision_with_its_key_0600(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    first = show(cli, "web")["serial"]
    cli.ok("renew", "web", "--force")
    out = tmp_path / "restored"
    cli.ok("archive", "get", "web", "--revision", "1", "--with-key", "--out", str(out))
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert format(cert.serial_number, "x") == first
    assert mode(out / "privkey.pem") == 0o600
    key = load_pem_private_key((out / "privkey.pem").read_bytes(), password=None)
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def test_archive_get_refuses_existing_files_and_unknown_revisions(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    out = tmp_path / "restored"
    out.mkdir()
    (out / "cert.pem").write_text("mine\n")
    message = refused(cli, initialised_home, "archive", "get", "web", "--out", str(out))
    assert "cert.pem already exists" in message and "--force" in message
    assert (out / "cert.pem").read_text() == "mine\n"
    other = str(tmp_path / "other")
    assert "no revision 7" in refused(
        cli, initialised_home, "archive", "get", "web", "--revision", "7", "--out", other
    )
    assert "'nope'" in refused(cli, initialised_home, "archive", "get", "nope", "--out", other)
    assert not Path(other).exists()


def test_archive_get_refuses_a_tampered_bundle_and_writes_nothing(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    bundle = LocalArchiveStore(initialised_home / "archive").path_of("web/000001.bundle")
    bundle.write_bytes(bundle.read_bytes()[:-1] + b"\x00")
    out = tmp_path / "restored"
    message = refused(
        cli, initialised_home, "archive", "get", "web", "--out", str(out), exit_code=1
    )
    assert "modified" in message
    assert not out.exists()
