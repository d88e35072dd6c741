"""Exporting a certificate and its key: the one deliberate way a plaintext key leaves certman."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from certman.errors import AlreadyExistsError, ValidationError
from certman.inventory.audit import append_event
from certman.inventory.tables import Revision
from certman.service.lifecycle import get_certificate
from certman.service.runtime import Runtime
from certman.service.steps import unseal_private_key


@dataclass(frozen=True, kw_only=True)
class ExportSpec:
    name: str
    out: Path
    format: str = "pem"
    passphrase: bytes | None = None
    force: bool = False


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
    if out.exists() and not out.is_dir():
        raise ValidationError(f"--out {out} exists and is not a directory.")
    if spec.format == "pem":
        names = ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
    else:
        names = [f"{spec.name}.p12"]
    existing = [n for n in names if (out / n).exists()]
    if existing and not spec.force:
        raise AlreadyExistsError(
            f"{out / existing[0]} already exists; pass --force to overwrite it."
        )
    cert_pem = rev.certificate_pem.encode()
    chain_pem = (rev.chain_pem or "").encode()
    key = load_private_key_der(unseal_private_key(rt, spec.name, rev))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if spec.format == "pem":
        # With a passphrase, an encrypted PKCS#8 key (RFC 5958, "ENCRYPTED PRIVATE KEY").
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(spec.passphrase)
            if spec.passphrase
            else serialization.NoEncryption()
        )
        files = {
            "cert.pem": (cert_pem, 0o644),
            "chain.pem": (chain_pem, 0o644),
            "fullchain.pem": (cert_pem + chain_pem, 0o644),
            "privkey.pem": (
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
                ),
                0o600,
            ),
        }
        for filename, (data, mode) in files.items():
            write_private(out / filename, data, mode=mode)
            os.chmod(out / filename, mode)
            written.append(out / filename)
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
