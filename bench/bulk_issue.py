"""Bulk issuance: 1,000 EC P-256 certificates through certman vs a bare cryptography loop.

certman's figure includes key generation, sealing, the CA's CSR check and signature,
the inventory writes (batched), the encrypted archive bundles and the audit events.
The reference is the loop the issue names: keygen + CSR + sign + PEM, nothing stored.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench.common import discard, fresh_runtime, remove_homes, table, timed
from certman.models import KeyType
from certman.service.authorities import load_private_ca
from certman.service.bulk import issue_many
from certman.service.lifecycle import IssueSpec


def bare_loop(count: int, verify_csr: bool) -> float:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    now = datetime.now(UTC)

    def run() -> None:
        for i in range(count):
            key = ec.generate_private_key(ec.SECP256R1())
            name = f"host{i}.example.com"
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(key, hashes.SHA256())
            )
            if verify_csr:
                assert csr.is_signature_valid
            cert = (
                x509.CertificateBuilder()
                .subject_name(csr.subject)
                .issuer_name(issuer_name)
                .public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
                )
                .sign(issuer_key, hashes.SHA256())
            )
            cert.public_bytes(serialization.Encoding.PEM)

    return timed(run)


def certman_bulk(count: int) -> float:
    rt = fresh_runtime()
    load_private_ca(rt, "default")  # warm: the CA key is loaded once per process anyway
    specs = [
        IssueSpec(
            name=f"host{i}",
            domains=(f"host{i}.example.com",),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=90),
        )
        for i in range(count)
    ]
    rt.issuer("default")
    elapsed = timed(lambda: issue_many(rt, specs))
    discard(rt)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    # Rounds interleave the paths, so that a neighbour's load hits them alike: the bare
    # loop runs before and after certman in each round and its time there is the mean of
    # the two (a machine that speeds up or slows down within a round moves both alike);
    # the ratio of each round is taken within it, and the median of those is the figure.
    bare, checked, ours = [], [], []
    for _ in range(args.runs):
        before = bare_loop(args.count, verify_csr=False)
        checked.append(bare_loop(args.count, verify_csr=True))
        ours.append(certman_bulk(args.count))
        bare.append((before + bare_loop(args.count, verify_csr=False)) / 2)
    remove_homes()
    ratio = statistics.median(b / o for b, o in zip(bare, ours, strict=True))
    checked_ratio = statistics.median(b / c for b, c in zip(bare, checked, strict=True))
    rows = [
        [
            "bare cryptography: keygen + CSR + sign + PEM",
            f"{args.count / min(bare):,.0f}/s",
            "1.00",
        ],
        [
            "bare loop + CSR signature check",
            f"{args.count / min(checked):,.0f}/s",
            f"{checked_ratio:.2f}",
        ],
        [
            "certman issue_many (seal + CA + inventory + archive + audit)",
            f"{args.count / min(ours):,.0f}/s",
            f"{ratio:.2f}",
        ],
    ]
    print(
        f"Bulk issuance of {args.count} EC P-256 certificates: best rate of {args.runs} rounds, "
        "ratio = median over the rounds of (bare time / time), each round running the bare "
        "loop before and after the others (its time: the mean of the two)\n"
    )
    print(table(["path", "rate", "x bare rate"], rows))
    print(
        f"\nper-round ratios: {', '.join(f'{b / o:.2f}' for b, o in zip(bare, ours, strict=True))}"
    )
    return 0 if ratio >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
