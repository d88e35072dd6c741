"""`certman init`: a home with config, master key, database, archive folder and default CA."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certman.config import Config
from certman.errors import KeyWrapError, ValidationError
from certman.models import KeyType
from certman.redact import redact_url

if TYPE_CHECKING:
    from certman.keywrap.pkcs11 import Pkcs11KeyWrapper

DEFAULT_CONFIG = """\
# certman configuration. Every key has a default, so this file only needs what you change;
# config.example.toml in the certman sources documents every key.

[defaults]
issuer = "default"
key_type = "ec-p256"
validity = "90d"
"""


@dataclass
class InitReport:
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the operator asked for but did not get

    @property
    def changed(self) -> bool:
        return bool(self.created)


def init_home(config: Config, *, ca_key_type: KeyType | None) -> InitReport:
    """Create whatever is missing; never touch what exists (idempotent)."""
    from certman.fileio import ensure_private_dir, write_private
    from certman.inventory.database import make_engine, migrate
    from certman.service.authorities import (
        AuthoritySpec,
        authority_exists,
        create_authority,
        get_authority,
    )
    from certman.service.runtime import Runtime

    # Everything the CA needs is read first: a bad value refuses before anything is created.
    spec = AuthoritySpec.from_config(config, "default", key_type=ca_key_type)
    _check_paths(config)
    # An HSM that cannot be reached (PIN variable unset, no such token) refuses now too.
    hsm = _HsmKey.probe(config) if config.get("kms", "type") == "pkcs11" else None
    if config.get("ca", "key_store") == "hsm":
        _probe_ca_token(config)
    report = InitReport()
    home = config.home
    _note(report, not home.exists(), f"home {home}")
    try:
        ensure_private_dir(home)
    except OSError as e:
        raise ValidationError(
            f"Cannot create the certman home {home}: {e.strerror}; point --home (or "
            "CERTMAN_HOME) at a directory you can create."
        ) from None

    if not config.path.exists():
        write_private(config.path, DEFAULT_CONFIG.encode(), mode=0o600)
        report.created.append(f"config {config.path}")
    else:
        report.present.append(f"config {config.path}")

    engine = make_engine(config.database_url, config_path=config.path)
    with private_umask():  # SQLite creates the database (and its -wal, -shm) on first use
        had_schema = _has_schema(engine)
        if config.get("kms", "type") == "local":
            _init_master_key(config, report, had_schema)
        elif hsm is not None:
            hsm.init(report, had_schema)

        applied = migrate(engine)
    if not had_schema:
        # An empty file an earlier command left (SQLite creates one on connect) is made
        # private too: from now on it holds sealed keys and the audit trail.
        for path in sqlite_files(config):
            os.chmod(path, 0o600)
    _note(report, applied, f"database {redact_url(config.database_url)} (migrated to head)")

    if config.get("archive", "type") == "local":
        archive = config.archive_path
        _note(report, not archive.exists(), f"archive folder {archive}")
        ensure_private_dir(archive)

    runtime = Runtime(config=config)
    runtime.engine = engine  # type: ignore[misc]  # reuse the migrated engine
    if not authority_exists(runtime, "default"):
        create_authority(runtime, spec)
        report.created.append("private CA default (root + intermediate)")
    else:
        existing = KeyType(get_authority(runtime, "default").key_type)
        report.present.append(f"private CA default ({existing.value})")
        if ca_key_type is not None and ca_key_type != existing:
            # A CA's key cannot change; saying "nothing to do" alone would hide that.
            report.notes.append(
                f"The existing CA default keeps its key type {existing.value}; --ca-key-type "
                f"only applies when init creates it (`certman ca create NAME --key-type "
                f"{ca_key_type.value}` makes another CA)."
            )
    engine.dispose()
    report.warnings.extend(exposure_warnings(config))
    return report


@contextmanager
def private_umask() -> Iterator[None]:
    """Files created meanwhile are readable by their owner only (umask 077)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def sqlite_files(config: Config) -> list[Path]:
    """The SQLite database of the home and its -wal/-shm companions, those that exist."""
    from sqlalchemy.engine import make_url

    url = make_url(config.database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return []
    database = Path(url.database)
    candidates = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    return [p for p in candidates if p.exists()]


def exposure_warnings(config: Config) -> list[str]:
    """One sentence per part of the home that group or others can read (or list)."""
    warnings = []
    home = config.home
    if home.is_dir() and os.stat(home).st_mode & 0o077:
        mode = os.stat(home).st_mode & 0o777
        warnings.append(
            f"The home {home} is mode {mode:o}, open to group or others; run `chmod 700 {home}`."
        )
    for path in sqlite_files(config):
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            warnings.append(
                f"The database file {path} is mode {mode:o}, readable by group or others; "
                f"run `chmod 600 {path}`."
            )
    return warnings


def _check_paths(config: Config) -> None:
    """Refuse, before anything is created, paths that can only fail half-way through."""
    wanted = [(config.home, "the home (--home)")]
    if config.get("archive", "type") == "local":
        wanted.append((config.archive_path, "archive.path"))
    for path, what in wanted:
        if path.exists() and not path.is_dir():
            raise ValidationError(
                f"{path}, {what}, is a file, not a directory; move it away or choose another path."
            )
    if (
        not config.path.exists()
        and not config.path.parent.is_dir()
        and config.path.parent != config.home
    ):
        raise ValidationError(
            f"The directory of the configuration file {config.path} does not exist; create it "
            "or give another --config."
        )


def _note(report: InitReport, created: bool, what: str) -> None:
    (report.created if created else report.present).append(what)


def _has_schema(engine: object) -> bool:
    from certman.inventory.database import current_revision

    return current_revision(engine) is not None  # type: ignore[arg-type]


def _probe_ca_token(config: Config) -> None:
    """Log in to the token the default CA's keys will be generated in (refuse early)."""
    from certman.service.ca_keys import hsm_token

    hsm_token(config).has_key("certman-probe")


@dataclass
class _HsmKey:
    """The token's AES wrapping key: created (non-extractable) only on a fresh inventory."""

    wrapper: Pkcs11KeyWrapper
    present: bool

    @classmethod
    def probe(cls, config: Config) -> _HsmKey:
        from certman.keywrap.pkcs11 import Pkcs11KeyWrapper
        from certman.service.runtime import Runtime

        wrapper = Runtime(config=config).build_key_wrapper("pkcs11")
        assert isinstance(wrapper, Pkcs11KeyWrapper)
        return cls(wrapper=wrapper, present=wrapper.token.has_key(wrapper.key_label))

    def init(self, report: InitReport, had_schema: bool) -> None:
        where = f"HSM key {self.wrapper.key_label!r} on token {self.wrapper.token.token_label!r}"
        if self.present:
            report.present.append(where)
            return
        if had_schema:
            raise KeyWrapError(
                f"The {where} is missing but the database already holds sealed keys; restore "
                "the key into the token (a new one could not open them) or fix [kms] key_label."
            )
        self.wrapper.ensure_key()
        report.created.append(f"{where} (AES-256, non-extractable)")


def _init_master_key(config: Config, report: InitReport, had_schema: bool) -> None:
    from certman.keywrap.local import LocalMasterKey

    path: Path = config.master_key_path
    if path.exists():
        LocalMasterKey.load(path)  # refuses a bad file now rather than later
        report.present.append(f"master key {path}")
        return
    if had_schema:
        raise KeyWrapError(
            f"The master key {path} is missing but the database already holds sealed keys; "
            "restore the master key from your backup (a new one could not open them)."
        )
    LocalMasterKey.create(path)
    report.created.append(f"master key {path} (0600)")
