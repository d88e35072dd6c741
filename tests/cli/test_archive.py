"""`certman archive verify`: every issued revision's bundle present, intact and readable."""

from __future__ import annotations

from pathlib import Path

import pytest

from certman.archive import LocalArchiveStore
from tests.conftest import Cli


@pytest.fixture
def archived(initialised_home: Path, cli: Cli) -> Path:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("renew", "web", "--force")
    cli.ok("issue", "api", "-d", "api.example.com")
    return initialised_home / "archive"


def bundle(archived: Path, location: str) -> Path:
    return LocalArchiveStore(archived).path_of(location)


def flip_one_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_every_revision_is_archived_as_a_private_bundle(archived: Path) -> None:
    locations = ["api/000001.bundle", "web/000001.bundle", "web/000002.bundle"]
    assert LocalArchiveStore(archived).list() == locations
    bundles = sorted(p.relative_to(archived).as_posix() for p in archived.rglob("*.bundle"))
    assert bundles == sorted(
        bundle(archived, loc).relative_to(archived).as_posix() for loc in locations
    )
    assert all(b.startswith("shards/") and b.count("/") == 2 for b in bundles)
    for path in archived.rglob("*.bundle"):
        assert path.stat().st_mode & 0o777 == 0o600
        assert b"BEGIN CERTIFICATE" not in path.read_bytes()  # encrypted at rest


def test_archive_verify_accepts_intact_bundles(archived: Path, cli: Cli) -> None:
    result = cli.ok("archive", "verify")
    assert "3 archived bundles present, intact and readable" in result.stdout


def test_archive_verify_names_a_tampered_bundle(archived: Path, cli: Cli) -> None:
    flip_one_byte(bundle(archived, "web/000002.bundle"))
    result = cli("archive", "verify")
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("[FAIL]")]
    assert len(failures) == 1
    assert "web revision 2" in failures[0]
    assert "web/000002.bundle" in failures[0]
    assert "modified" in failures[0]


def test_doctor_names_a_tampered_bundle(archived: Path, cli: Cli) -> None:
    flip_one_byte(bundle(archived, "api/000001.bundle"), offset=10)
    result = cli("doctor")
    assert result.exit_code == 1
    assert "api revision 1" in result.stdout
    assert "api/000001.bundle" in result.stdout


def test_archive_verify_names_a_missing_bundle(archived: Path, cli: Cli) -> None:
    bundle(archived, "web/000001.bundle").unlink()
    result = cli("archive", "verify")
    assert result.exit_code == 1
    assert "web revision 1" in result.stdout
    assert "missing" in result.stdout


def test_doctor_names_a_missing_bundle(archived: Path, cli: Cli) -> None:
    bundle(archived, "web/000001.bundle").unlink()
    result = cli("doctor")
    assert result.exit_code == 1
    assert "web/000001.bundle is missing" in result.stdout


def test_archive_verify_detects_a_bundle_swapped_for_another_revisions(
    archived: Path, cli: Cli
) -> None:
    import sqlite3

    # Swap both the bundle and its recorded SHA-256, so only the bundle's binding to its
    # certificate and revision can tell.
    bundle(archived, "web/000002.bundle").write_bytes(
        bundle(archived, "web/000001.bundle").read_bytes()
    )
    with sqlite3.connect(archived.parent / "certman.db") as db:
        (sha,) = db.execute(
            "SELECT archive_sha256 FROM revision WHERE number = 1 AND "
            "archive_location = 'web/000001.bundle'"
        ).fetchone()
        db.execute(
            "UPDATE revision SET archive_sha256 = ? WHERE archive_location = 'web/000002.bundle'",
            (sha,),
        )
    result = cli("archive", "verify")
    assert result.exit_code == 1
    assert "web revision 2" in result.stdout


def test_archive_verify_with_nothing_archived(initialised_home: Path, cli: Cli) -> None:
    assert "0 archived bundles" in cli.ok("archive", "verify").stdout


def test_a_home_archived_in_the_layout_before_still_verifies_restores_and_renews(
    archived: Path, cli: Cli, tmp_path: Path
) -> None:
    # Homes archived before the sharded layout hold <archive>/<name>/<revision>.bundle.
    store = LocalArchiveStore(archived)
    for location in store.list():
        old = archived / location
        old.parent.mkdir(mode=0o700, exist_ok=True)
        store.path_of(location).rename(old)
    assert not list((archived / "shards").rglob("*.bundle"))
    assert "3 archived bundles present, intact and readable" in cli.ok("archive", "verify").stdout
    cli.ok("archive", "get", "web", "--revision", "1", "--out", str(tmp_path / "restored"))
    assert (tmp_path / "restored" / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE")
    cli.ok("renew", "web", "--force")
    assert store.list("web/") == ["web/000001.bundle", "web/000002.bundle", "web/000003.bundle"]
    assert store.path_of("web/000003.bundle").parent.parent == archived / "shards"
    assert "4 archived bundles present, intact and readable" in cli.ok("archive", "verify").stdout
    flip_one_byte(archived / "web" / "000002.bundle")
    assert "web/000002.bundle" in cli("archive", "verify").stdout
