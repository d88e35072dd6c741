"""Fixtures for the ACME tests: Pebble runs, a certman home wired to them, chain checks."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from sqlmodel import select

from certman.config import load_config
from certman.inventory.tables import ManagedCertificate, Revision
from certman.service.runtime import Runtime
from tests.acme.ari_server import AriServer
from tests.components.fixtures import BLOCKED
from tests.components.pebble import Pebble, free_port, pebble_available
from tests.components.required import missing_component
from tests.conftest import Cli

if not pebble_available():  # scripts/test.sh installs it: scripts/apt-install.sh pebble
    missing_component("pebble is not installed (apt-get install pebble)", module_level=True)

__all__ = ["BLOCKED"]  # the domain the session's Pebble refuses


@dataclass
class AcmeHome:
    """An initialised certman home with [issuers.*] tables pointing at a Pebble."""

    home: Path
    cli: Cli
    pebble: Pebble

    @property
    def config_path(self) -> Path:
        return self.home / "certman.toml"

    def configure(self, name: str = "pebble", section: str = "issuers", **keys: Any) -> None:
        """Append a table; ACME issuers get directory, ca_bundle, http_address by default."""
        if section == "issuers":
            keys.setdefault("type", "acme")
            if keys["type"] == "acme":
                keys.setdefault("directory", self.pebble.directory_url)
                keys.setdefault("ca_bundle", str(self.pebble.ca_bundle))
                keys.setdefault("http_address", f"127.0.0.1:{self.pebble.http_port}")
            header = f"[issuers.{name}]"
        else:
            header = f"[{section}]"
        lines = [header] + [f"{k} = {json.dumps(v)}" for k, v in keys.items() if v is not None]
        with self.config_path.open("a") as f:
            f.write("\n" + "\n".join(lines) + "\n")

    def runtime(self) -> Runtime:
        return Runtime(config=load_config(self.home, self.config_path))

    def issue(self, name: str, *domains: str, issuer: str = "pebble") -> Any:
        args = ["issue", name, "--issuer", issuer]
        for domain in domains:
            args += ["-d", domain]
        return self.cli(*args)

    def revisions(self, name: str) -> list[Revision]:
        rt = self.runtime()
        try:
            with rt.session() as session:
                cert = session.exec(
                    select(ManagedCertificate).where(ManagedCertificate.name == name)
                ).first()
                if cert is None:
                    return []
                return list(
                    session.exec(
                        select(Revision)
                        .where(Revision.certificate_id == cert.id)
                        .order_by(Revision.number)  # type: ignore[arg-type]
                    ).all()
                )
        finally:
            rt.engine.dispose()

    def verified(self, name: str, *names: str) -> Revision:
        """The newest revision of ``name``, its chain verified up to this Pebble run's root."""
        rev = self.revisions(name)[-1]
        assert rev.certificate_pem and rev.chain_pem, f"{name} has no issued revision"
        verify_chain(rev.certificate_pem, rev.chain_pem, self.pebble.root_pem, list(names))
        return rev

    def certificate(self, name: str) -> ManagedCertificate | None:
        rt = self.runtime()
        try:
            with rt.session() as session:
                return session.exec(
                    select(ManagedCertificate).where(ManagedCertificate.name == name)
                ).first()
        finally:
            rt.engine.dispose()


@pytest.fixture
def acme_home(initialised_home: Path, cli: Cli, pebble: Pebble) -> AcmeHome:
    return AcmeHome(home=initialised_home, cli=cli, pebble=pebble)


def verify_chain(leaf_pem: str, chain_pem: str, root_pem: bytes, names: list[str]) -> None:
    """Verify the leaf for every name up to the root fetched from that very Pebble run."""
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    intermediates = x509.load_pem_x509_certificates(chain_pem.encode())
    store = Store(x509.load_pem_x509_certificates(root_pem))
    builder = PolicyBuilder().store(store).time(datetime.now(UTC))
    for name in names:
        subject: x509.DNSName | x509.IPAddress
        try:
            subject = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            subject = x509.DNSName(name.replace("*.", "wildcard-test.", 1))
        builder.build_server_verifier(subject).verify(leaf, intermediates)


@pytest.fixture
def other_port() -> int:
    return free_port()


@pytest.fixture
def ari(pebble: Pebble) -> Iterator[AriServer]:
    """An ARI-capable directory in front of the shared Pebble (see ari_server.py)."""
    server = AriServer(pebble, free_port()).start()
    yield server
    server.stop()
