"""Exporting a certificate and its key: the one deliberate way a plaintext key leaves certman."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import select

from certman.errors import AlreadyExistsError, ValidationError
from certman.inventory.audit import append_event
from certman.inventory.tables import Revision
from certman.service.lifecycle import get_certificate
from certman.service.runtime import Runtime
from certman.service.steps import unseal_private_key

if TYPE_CHECKING:
    from certman.pki import PrivateKey


@dataclass(frozen=True, kw_only=True)
class ExportSpec:
    name: str
    out: Path
    format: str = "pem"
    passphrase: bytes | None = None
    force: bool = False


PEM_FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")


def check_out(out: Path, names: Sequence[str], *, force: bool) -> None:
    """Refuse an --out that is a file, or that holds one of ``names`` (unless ``force``)."""
    if out.exists() and not out.is_dir():
        raise ValidationError(f"--out {out} exists and is not a directory.")
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise AlreadyExistsError(
            f"{out / existing[0]} already exists; pass --force to overwrite it."
        )


def write_pem_files(
    out: Path,
    *,
    cert_pem: bytes,
    chain_pem: bytes,
    key: PrivateKey | None,
    passphrase: bytes | None = None,
) -> list[Path]:
    """cert.pem, chain.pem and fullchain.pem (0644), and privkey.pem (0600) when ``key`` is given
    (encrypted PKCS#8 when ``passphrase`` is).

    Each file is written atomically with its final mode from the start: the key is never
    readable by others, not even for a moment.
    """
    from cryptography.hazmat.primitives import serialization

    from certman.fileio import write_private

    files = {
        "cert.pem": (cert_pem, 0o644),
        "chain.pem": (chain_pem, 0o644),
        "fullchain.pem": (cert_pem + chain_pem, 0o644),
    }
    if key is not None:
        # With a passphrase, an encrypted PKCS#8 key (RFC 5958, "ENCRYPTED PRIVATE KEY").
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        files["privkey.pem"] = (
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            ),
            0o600,
        )
    written = []
    for filename, (data, mode) in files.items():
        write_private(out / filename, data, mode=mode)
        os.chmod(out / filename, mode)
        written.append(out / filename)
    return written


def export_certificate(rt: Runtime, spec: ExportSpec) -> list[Path]:
    """Write the active revision to ``spec.out``; the key file is created 0600.

    PKCS#12 always needs a passphrase; with PEM a passphrase encrypts privkey.pem.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    from certman.fileio import write_private
    from certman.pki import load_certificate, load_private_key_der, split_pem_chain

    if spec.format not in ("pem", "pkcs12"):
        raise ValidationError(f"Unknown export format {spec.format!r}; use pem or pkcs12.")
    if spec.format == "pkcs12" and not spec.passphrase:
        raise ValidationError(
            "A PKCS#12 export needs a passphrase: set --passphrase-env to the name of an "
            "environment variable that holds it."
        )
    with rt.session() as session:
        cert = get_certificate(session, spec.name)
        rev = session.exec(
            select(Revision)
            .where(Revision.certificate_id == cert.id)
            .where(Revision.number == cert.current_revision)
        ).first()
    if rev is None or rev.certificate_pem is None:
        raise ValidationError(f"Certificate {spec.name!r} has no issued revision to export yet.")
    out = spec.out
    names = PEM_FILES if spec.format == "pem" else (f"{spec.name}.p12",)
    check_out(out, names, force=spec.force)
    cert_pem = rev.certificate_pem.encode()
    chain_pem = (rev.chain_pem or "").encode()
    key = load_private_key_der(unseal_private_key(rt, spec.name, rev))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if spec.format == "pem":
        written = write_pem_files(
            out, cert_pem=cert_pem, chain_pem=chain_pem, key=key, passphrase=spec.passphrase
        )
    else:
        assert spec.passphrase is not None
        chain = [load_certificate(p) for p in split_pem_chain(chain_pem)]
        blob = pkcs12.serialize_key_and_certificates(
            spec.name.encode(),
            key,
            load_certificate(cert_pem),
            chain or None,
            serialization.BestAvailableEncryption(spec.passphrase),
        )
        write_private(out / names[0], blob, mode=0o600)
        written.append(out / names[0])
    with rt.session() as session:
        append_event(
            session,
            rt.clock.now(),
            "certificate.export",
            spec.name,
            revision=rev.number,
            serial=rev.serial,
            format=spec.format,
            out=str(out),
            encrypted=bool(spec.passphrase),
        )
        session.commit()
    return written


@dataclass(frozen=True, kw_only=True)
class RestoreSpec:
    name: str
    out: Path
    revision: int | None = None  # None: the active revision (the latest if none is active)
    with_key: bool = False
    force: bool = False


def restore_from_archive(rt: Runtime, spec: RestoreSpec) -> list[Path]:
    """Write one revision's certificate and chain (and key, 0600) from its archived bundle.

    The bundle is read back through the archive store (SHA-256 checked against the
    inventory) and decrypted: what comes out is what was archived, not the inventory's copy.
    """
    import json

    from certman.archive.bundle import open_bundle
    from certman.contracts.archive import ArchiveGetRequest, ArchiveRef
    from certman.errors import NotFoundError
    from certman.pki import load_private_key_der
    from certman.service.steps import key_context

    with rt.session() as session:
        cert = get_certificate(session, spec.name)
        number = spec.revision or cert.current_revision or cert.latest_revision
        rev = session.exec(
            select(Revision)
            .where(Revision.certificate_id == cert.id)
            .where(Revision.number == number)
        ).first()
    if rev is None:
        raise NotFoundError(
            f"Certificate {spec.name!r} has no revision {number}; `certman show {spec.name}` "
            "lists its revisions."
        )
    if not (rev.archive_location and rev.archive_sha256):
        raise ValidationError(
            f"Revision {number} of {spec.name!r} was never archived (it is {rev.state}); "
            "choose an archived revision with --revision."
        )
    names = PEM_FILES if spec.with_key else PEM_FILES[:3]
    check_out(spec.out, names, force=spec.force)
    ref = ArchiveRef(
        location=rev.archive_location,
        sha256=rev.archive_sha256,
        extra=json.loads(rev.archive_extra) if rev.archive_extra else {},
    )
    body = rt.archive.get(ArchiveGetRequest(ref=ref)).body
    bundle = open_bundle(rt.key_wrapper, body, name=spec.name, revision=number)
    key = None
    if spec.with_key:
        der = rt.key_wrapper.unwrap(bundle.sealed_key, key_context(spec.name, number))
        key = load_private_key_der(der)
    spec.out.mkdir(parents=True, exist_ok=True)
    written = write_pem_files(
        spec.out, cert_pem=bundle.certificate_pem, chain_pem=bundle.chain_pem, key=key
    )
    with rt.session() as session:
        append_event(
            session,
            rt.clock.now(),
            "certificate.archive_get",
            spec.name,
            revision=number,
            serial=rev.serial,
            with_key=spec.with_key,
            out=str(spec.out),
        )
        session.commit()
    return written
