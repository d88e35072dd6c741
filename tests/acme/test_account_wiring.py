"""The ACME issuer's parts wired from contracts alone: no runtime, no inventory query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from certman.acme_client.account import Account
from certman.acme_client.ari import cert_id
from certman.acme_client.issuer import AcmeIssuer
from certman.acme_client.resources import DirectoryInfo
from certman.acme_client.settings import AcmeSettings, parse_settings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certman.contracts.account_store import SavedKey, StoredAccount
from certman.contracts.issuer import IssueRequest
from certman.models import KeyType

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class MemoryAccounts:
    """An AccountStore in a dict: the account never touches a database."""

    def __init__(self, account: StoredAccount | None = None) -> None:
        self.account = account

    def load(self) -> StoredAccount | None:
        return self.account

    def save_key(self, account: StoredAccount) -> SavedKey:
        replaced, self.account = self.account, account
        return SavedKey(account=account, replaced=replaced, ours=True)

    def restore(self, saved: SavedKey) -> None:
        self.account = saved.replaced

    def update(self, **values: Any) -> None:
        from dataclasses import replace

        assert self.account is not None
        if values.pop("clear_retry_after", False):
            values["retry_after"] = None
        changes = {k: v for k, v in values.items() if v is not None or k == "retry_after"}
        self.account = replace(self.account, **changes)


class StubClient:
    on_account_gone: Any = None

    def directory_info(self) -> DirectoryInfo:
        return DirectoryInfo(
            new_account="https://acme.invalid/new-acct",
            external_account_required=False,
            renewal_info="https://acme.invalid/renewal-info",
            profiles=(),
        )


def settings(tmp_path: Path) -> AcmeSettings:
    table = {"type": "acme", "name": "le", "directory": "https://acme.invalid/dir"}
    return parse_settings(table, config_path=tmp_path / "certman.toml", home=tmp_path)


def stored(retry_after: datetime | None = None) -> StoredAccount:
    return StoredAccount(
        key_type="ec-p256",
        sealed_key="{}",
        account_url="https://acme.invalid/acct/1",
        status="valid",
        contact=None,
        eab_kid=None,
        retry_after=retry_after,
    )


def account(tmp_path: Path, store: MemoryAccounts) -> Account:
    def no_wrapper() -> Any:
        raise AssertionError("reading the account's status unseals nothing")

    return Account(
        store=store,
        key_wrapper=no_wrapper,
        settings=settings(tmp_path),
        client=StubClient(),  # type: ignore[arg-type]
    )


def test_the_account_reads_its_status_and_backoff_from_its_store(tmp_path: Path) -> None:
    store = MemoryAccounts(stored(retry_after=NOW + timedelta(hours=2)))
    acme = account(tmp_path, store)
    assert acme.stored_status() == "valid"
    acme.record_backoff(NOW + timedelta(hours=1))  # an earlier Retry-After never shortens
    assert acme.backoff_until() == NOW + timedelta(hours=2)
    acme.record_backoff(NOW + timedelta(hours=3))
    assert store.account is not None and store.account.retry_after == NOW + timedelta(hours=3)


def issued_pem() -> bytes:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.example.com")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=90))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def request(revision: int, replacing_pem: bytes | None) -> IssueRequest:
    return IssueRequest(
        name="web",
        revision=revision,
        identifiers=("web.example.com",),
        csr_pem=b"",
        key_type=KeyType.EC_P256,
        validity=timedelta(days=90),
        now=NOW,
        replacing_pem=replacing_pem,
    )


def test_a_renewal_order_replaces_the_certificate_the_request_names(tmp_path: Path) -> None:
    # RFC 9773 section 5: the ARI certID of the certificate being replaced.
    client = StubClient()
    issuer = AcmeIssuer(
        settings=settings(tmp_path),
        client=client,  # type: ignore[arg-type]
        account=account(tmp_path, MemoryAccounts()),
        solver=object(),  # type: ignore[arg-type]
    )
    pem = issued_pem()
    assert issuer._replaces(request(2, pem)) == cert_id(pem)
    assert issuer._replaces(request(2, None)) is None  # nothing active to replace
    assert issuer._replaces(request(1, pem)) is None  # a first issuance replaces nothing
