"""doctor's fact check and the per-tick drift query over 100,000 certificates."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, insert, select

from bench.common import certificate_row, discard, fresh_runtime, remove_homes, table
from certman.inventory.tables import AuditEvent, ManagedCertificate, Revision
from certman.service.checks import CheckReport, check_facts
from certman.service.facts import certified_facts, due_by_their_certificates, expected_renewal

BATCH = 10_000
DISTINCT = 200  # certificates signed; rows reuse them (parsing costs the same)


def certificates(now: datetime) -> list[str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    pems = []
    for i in range(DISTINCT):
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=30 + i))
            .sign(key, hashes.SHA256())
        )
        pems.append(cert.public_bytes(serialization.Encoding.PEM).decode())
    return pems


def populate(rt: object, rows: int, now: datetime) -> None:
    pems = certificates(now)
    facts = [certified_facts(p) for p in pems]
    cert_table = ManagedCertificate.__table__  # type: ignore[attr-defined]
    rev_table = Revision.__table__  # type: ignore[attr-defined]
    audit_table = AuditEvent.__table__  # type: ignore[attr-defined]
    with rt.session() as session:  # type: ignore[attr-defined]
        base = session.execute(select(func.max(audit_table.c.seq))).scalar() or 0
        for start in range(0, rows, BATCH):
            certs, revs, events = [], [], []
            for i in range(start, min(rows, start + BATCH)):
                f = facts[i % DISTINCT]
                common = {
                    "serial": f.serial,
                    "fingerprint_sha256": f.fingerprint_sha256,
                    "not_before": f.not_before,
                    "not_after": f.not_after,
                }
                certs.append(
                    certificate_row(
                        i, now, id=i + 1, renewal_due_at=expected_renewal(f, None), **common
                    )
                )
                revs.append(
                    {
                        "certificate_id": i + 1,
                        "number": 1,
                        "state": "active",
                        "reason": "issue",
                        "key_type": "ec-p256",
                        "certificate_pem": pems[i % DISTINCT],
                        "created_at": now,
                        "updated_at": now,
                        **common,
                    }
                )
                details = {"revision": 1, "serial": f.serial, "issuer": "default"}
                details["fingerprint_sha256"] = f.fingerprint_sha256
                events.append(
                    {
                        "seq": base + i + 1,
                        "at": now,
                        "action": "certificate.issue",
                        "subject": f"cert-{i:07d}",
                        "actor": "bench",
                        "details": json.dumps(details),
                        "prev_hash": "0" * 64,
                        "hash": "0" * 64,
                    }
                )
            session.execute(insert(cert_table), certs)
            session.execute(insert(rev_table), revs)
            session.execute(insert(audit_table), events)
        session.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    rt = fresh_runtime()
    now = datetime.now(UTC).replace(microsecond=0)
    populate(rt, args.rows, now)
    start = time.perf_counter()
    report = CheckReport()
    check_facts(rt, report)
    full = time.perf_counter() - start
    assert [c.ok for c in report.checks] == [True], report.checks
    start = time.perf_counter()
    assert due_by_their_certificates(rt) == []
    tick = time.perf_counter() - start
    discard(rt)
    remove_homes()
    print(f"Fact checks, {args.rows:,} certificates\n")
    print(
        table(
            ["check", "time"],
            [
                ["doctor/preflight: every certificate parsed, audit trail read", f"{full:.2f} s"],
                ["renew --due / service tick: SQL drift query", f"{tick * 1000:.0f} ms"],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
