"""`certman init`: a private home, created once, never changed by a second run."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cli.outcomes import assert_error
from tests.conftest import Cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def file_states(home: Path) -> dict[str, tuple[str, int, int]]:
    """sha256, mode and mtime of every file; mode of every directory.

    SQLite's -wal and -shm files come and go with connections (and touch the directory's
    mtime as they do); they are left out.
    """
    states = {}
    for path in sorted([home, *home.rglob("*")]):
        if path.name.endswith(("-wal", "-shm")):
            continue
        st = path.stat()
        if path.is_dir():
            states[path.relative_to(home).as_posix()] = ("dir", st.st_mode, 0)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            states[path.relative_to(home).as_posix()] = (digest, st.st_mode, st.st_mtime_ns)
    return states


def test_init_creates_a_private_home(cli: Cli, home: Path) -> None:
    result = cli.ok("init")
    assert mode(home) == 0o700
    assert mode(home / "archive") == 0o700
    assert (home / "certman.db").is_file()
    assert "created" in result.stdout


def test_init_creates_the_master_key_readable_only_by_its_owner(cli: Cli, home: Path) -> None:
    cli.ok("init")
    assert mode(home / "master.key") == 0o600


def test_init_creates_a_config_when_missing(cli: Cli, home: Path) -> None:
    cli.ok("init")
    assert (home / "certman.toml").is_file()
    assert mode(home / "certman.toml") == 0o600
    cli.ok("doctor")  # the written config loads


def test_init_keeps_an_existing_config_byte_for_byte(cli: Cli, home: Path) -> None:
    home.mkdir(mode=0o700)
    text = b'# mine, keep it\n[defaults]\nvalidity = "30d"   # short-lived\n'
    (home / "certman.toml").write_bytes(text)
    result = cli.ok("init")
    assert (home / "certman.toml").read_bytes() == text
    assert "kept" in result.stdout
    cli.ok("issue", "web", "-d", "www.example.com")
    view = json.loads(cli.ok("show", "web", "--json").stdout)
    assert view["validity_seconds"] == 30 * 86400  # and uses it as it is


def test_a_second_init_changes_nothing_and_says_so(cli: Cli, home: Path) -> None:
    cli.ok("init")
    before = file_states(home)
    result = cli.ok("init")
    assert "Nothing to do" in result.stdout
    assert "already initialised" in result.stdout
    assert file_states(home) == before


def test_init_creates_the_default_ca(cli: Cli) -> None:
    cli.ok("init")
    (ca,) = json.loads(cli.ok("ca", "list", "--json").stdout)
    assert ca["name"] == "default"
    assert ca["key_type"] == "ec-p256"
    view = json.loads(cli.ok("ca", "show", "default", "--json").stdout)
    root = x509.load_pem_x509_certificate(view["root_certificate_pem"].encode())
    inter = x509.load_pem_x509_certificate(view["intermediate_certificate_pem"].encode())
    assert inter.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    inter.verify_directly_issued_by(root)


def test_init_honours_the_ca_key_type(cli: Cli) -> None:
    cli.ok("init", "--ca-key-type", "ec-p384")
    view = json.loads(cli.ok("ca", "show", "default", "--json").stdout)
    assert view["key_type"] == "ec-p384"
    for field in ("root_certificate_pem", "intermediate_certificate_pem"):
        key = x509.load_pem_x509_certificate(view[field].encode()).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp384r1"


def test_init_refuses_an_unknown_ca_key_type_and_creates_nothing(cli: Cli, home: Path) -> None:
    message = assert_error(cli("init", "--ca-key-type", "dsa-1024"), 2)
    assert "--ca-key-type" in message
    assert "ec-p256" in message
    assert not home.exists()


def test_init_with_a_malformed_config_names_the_key_and_file_and_creates_nothing(
    cli: Cli, home: Path
) -> None:
    home.mkdir(mode=0o700)
    (home / "certman.toml").write_text('[defaults]\nvalidity = "forever"\n')
    message = assert_error(cli("init"), 2)
    assert "defaults.validity" in message
    assert str(home / "certman.toml") in message
    assert sorted(p.name for p in home.iterdir()) == ["certman.toml"]


def test_init_refuses_a_missing_master_key_when_the_database_holds_sealed_keys(
    cli: Cli, home: Path
) -> None:
    cli.ok("init")
    (home / "master.key").unlink()
    message = assert_error(cli("init"), 1)
    assert "master key" in message
    assert "backup" in message
    assert not (home / "master.key").exists()  # never silently replaced by a new one


# --- permissions of the home and the database ----------------------------------------------


def test_init_creates_the_database_and_its_wal_files_0600(cli: Cli, home: Path) -> None:
    import sqlite3

    cli.ok("init")
    assert mode(home / "certman.db") == 0o600
    # -wal and -shm exist while a connection is open; SQLite gives them the database's mode.
    with sqlite3.connect(home / "certman.db") as holder:
        holder.execute("SELECT count(*) FROM certificate").fetchone()
        cli.ok("issue", "web", "-d", "www.example.com")
        for name in ("certman.db-wal", "certman.db-shm"):
            assert mode(home / name) == 0o600, name


def test_init_makes_an_empty_database_an_earlier_command_left_private(cli: Cli, home: Path) -> None:
    home.mkdir(mode=0o700)
    (home / "certman.db").touch(mode=0o644)  # what SQLite leaves when `certman list` ran first
    (home / "certman.db").chmod(0o644)
    cli.ok("init")
    assert mode(home / "certman.db") == 0o600


def test_init_on_an_existing_open_home_warns_and_keeps_its_mode(cli: Cli, home: Path) -> None:
    home.mkdir()
    home.chmod(0o755)
    result = cli.ok("init")
    assert f"warning: The home {home} is mode 755" in result.stderr
    assert f"chmod 700 {home}" in result.stderr
    assert mode(home) == 0o755  # the operator's directory: said, not changed
    again = cli.ok("init")
    assert "Nothing to do" in again.stdout
    assert "mode 755" in again.stderr  # said every time until fixed


def test_init_again_with_another_ca_key_type_says_the_existing_ca_keeps_its_own(
    home: Path, cli: Cli
) -> None:
    cli.ok("init")
    result = cli.ok("init", "--ca-key-type", "rsa-3072")
    assert "Nothing to do" in result.stdout
    assert "The existing CA default keeps its key type ec-p256" in result.stderr
    assert "ca create NAME --key-type rsa-3072" in result.stderr
    view = json.loads(cli.ok("ca", "show", "default", "--json").stdout)
    assert view["key_type"] == "ec-p256"


def test_init_refuses_an_empty_ca_key_type_instead_of_taking_the_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = Cli(home)("init", "--ca-key-type", "")
    message = assert_error(result, 2)
    assert "Unknown --ca-key-type ''" in message
    assert not (home / "certman.db").exists()
