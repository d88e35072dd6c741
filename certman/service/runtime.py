"""The runtime: configuration, clock, database and backends, each built once when first used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from certman.clock import Clock, SystemClock
from certman.config import Config
from certman.contracts.archive import ArchiveStore
from certman.contracts.build_context import BuildContext
from certman.contracts.deployer import Deployer
from certman.contracts.issuer import Issuer
from certman.contracts.key_wrapper import KeyWrapper
from certman.errors import ConfigError, NotFoundError, ValidationError
from certman.registry import BackendRegistry

if TYPE_CHECKING:
    from certman.aws.clients import AwsClients
    from certman.contracts.account_store import AccountStore
    from certman.inventory.audit_seal import AuditSeal


@dataclass
class Runtime:
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    registry: BackendRegistry = field(default_factory=BackendRegistry)
    check_schema: bool = True
    _issuers: dict[str, Issuer] = field(default_factory=dict)
    _deployers: dict[str, Deployer] = field(default_factory=dict)

    @cached_property
    def engine(self) -> Engine:
        from certman.inventory.database import make_engine, require_head

        engine = make_engine(self.config.database_url, config_path=self.config.path)
        if self.check_schema:
            require_head(engine)
        return engine

    @contextmanager
    def session(self, bind: Connection | None = None) -> Iterator[Session]:
        """A session on the inventory; on ``bind`` (one connection for all its transactions)
        when given."""
        from certman.inventory.audit_seal import AUDIT_SEAL

        info = {AUDIT_SEAL: self.audit_seal}
        with Session(bind or self.engine, expire_on_commit=False, info=info) as session:
            yield session

    @cached_property
    def audit_seal(self) -> AuditSeal:
        """The audit chain's key (unsealed on first use) and this home's head anchor."""
        from certman.inventory.audit_seal import ANCHOR_NAME, AuditSeal

        return AuditSeal(
            lambda: self.key_wrapper,
            self.config.home / ANCHOR_NAME,
            anchor_required=self._database_is_the_homes_own(),
        )

    def _database_is_the_homes_own(self) -> bool:
        """SQLite inside the home: one home appends every event, so it always has an anchor."""
        url = self.engine.url
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return False
        database = os.path.realpath(url.database)
        return os.path.dirname(database) == os.path.realpath(self.config.home)

    @cached_property
    def aws(self) -> AwsClients:
        """boto3 clients from [aws], built once and shared by every AWS adapter."""
        from certman.aws.clients import AwsClients

        return AwsClients.from_settings(self.config.sections["aws"], source=str(self.config.path))

    @property
    def build_context(self) -> BuildContext:
        """What every backend factory gets besides its settings (never this runtime); made
        for each build, so a backend gets the runtime's clock of the moment it is built."""
        return BuildContext(
            config_path=self.config.path,
            home=self.config.home,
            clock=self.clock,
            master_key_path=self.config.master_key_path,
            archive_path=self.config.archive_path,
            key_wrapper_type=str(self.config.get("kms", "type")),
            aws=lambda: self.aws,
            key_wrapper=lambda: self.key_wrapper,
            acme_accounts=self._acme_accounts,
            private_ca=self._private_ca,
        )

    def _acme_accounts(self, issuer: str, directory: str) -> AccountStore:
        from certman.inventory.acme_accounts import InventoryAccountStore

        return InventoryAccountStore(
            session=self.session, clock=self.clock, issuer=issuer, directory=directory
        )

    def _private_ca(self, name: str) -> Issuer:
        from certman.service.authorities import load_private_ca

        return load_private_ca(self, name)

    @cached_property
    def key_wrapper(self) -> KeyWrapper:
        from certman.keywrap.dispatch import WrapperSet

        kms = self.config.sections["kms"]
        return WrapperSet(
            primary=self.build_key_wrapper(kms["type"]),  # type: ignore[return-value]
            build_other=self.build_key_wrapper,
        )

    def build_key_wrapper(self, type_name: str, *, setting: str = "") -> KeyWrapper:
        """A key wrapper of ``type_name`` from the [kms] settings (whatever [kms] type says).

        ``setting`` is the command-line flag ``type_name`` came from ("--to"): an unknown
        type is refused naming it. Without one, it came from [kms] type or a sealed record.
        """
        if setting and type_name not in self.registry.key_wrappers:
            known = ", ".join(sorted(self.registry.key_wrappers))
            raise ValidationError(
                f"{setting} {type_name!r} is not a key wrapper; use one of: {known}."
            )
        kms = dict(self.config.sections["kms"])
        kms["type"] = type_name
        build = self.registry.factory("key_wrappers", type_name, f"[kms] of {self.config.path}")
        return build(self.build_context, kms)  # type: ignore[no-any-return]

    @cached_property
    def archive(self) -> ArchiveStore:
        archive = self.config.sections["archive"]
        where = f"[archive] of {self.config.path}"
        build = self.registry.factory("archive_stores", archive["type"], where)
        return build(self.build_context, archive)  # type: ignore[no-any-return]

    def issuer(self, name: str) -> Issuer:
        """The issuer called ``name``: an [issuers.NAME] table, else a private CA of that name."""
        if name not in self._issuers:
            self._issuers[name] = self._build_issuer(name)
        return self._issuers[name]

    def _build_issuer(self, name: str) -> Issuer:
        settings: dict[str, Any] | None = None
        if name in self.config.issuers:
            settings = dict(self.config.issuers[name])
        else:
            from certman.service.authorities import authority_exists

            if authority_exists(self, name):
                settings = {"type": "private-ca", "ca": name}
        if settings is None:
            raise NotFoundError(f"Unknown issuer {name!r}; {self.known_issuers_hint()}")
        settings.setdefault("name", name)
        where = f"[issuers.{name}] of {self.config.path}"
        build = self.registry.factory("issuers", str(settings["type"]), where)
        return build(self.build_context, settings)  # type: ignore[no-any-return]

    def known_issuers_hint(self) -> str:
        from certman.service.authorities import authority_names

        names = sorted({*self.config.issuers, *authority_names(self)})
        if not names:
            return "run `certman init` to create the default CA."
        return (
            f"known issuers: {', '.join(names)}. Create a CA with `certman ca create` "
            "or add an [issuers.NAME] table."
        )

    def deployer(self, name: str) -> Deployer:
        if name not in self._deployers:
            if name not in self.config.targets:
                known = ", ".join(sorted(self.config.targets)) or "none configured"
                raise NotFoundError(
                    f"Unknown target {name!r}; add [targets.{name}] to {self.config.path} "
                    f"(known targets: {known})."
                )
            settings = dict(self.config.targets[name])
            settings.setdefault("name", name)
            where = f"[targets.{name}] of {self.config.path}"
            build = self.registry.factory("targets", str(settings["type"]), where)
            self._deployers[name] = build(self.build_context, settings)
        return self._deployers[name]

    def require_config_type(self, section: str, expected: str) -> None:
        actual = self.config.sections[section]["type"]
        if actual != expected:
            raise ConfigError(f"[{section}] type is {actual!r}; this needs {expected!r}.")
