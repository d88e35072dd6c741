"""AWS adapters against a moto server this script starts: KMS sealing, S3 archives, ACM imports.

- Seal + unseal of a private key (PKCS#8 DER of EC P-256), each object under its own
  encryption context: the local master key vs aws-kms (one GenerateDataKey and one Decrypt
  per object), with a few calls in flight, and with the bounded data-key cache re-opening.
- S3 archive: put + get of 1,000 sealed bundles with SSE-S3, SSE-KMS (bucket key) and
  SSE-C (a fresh customer key per object, sealed), one at a time and with put_many.
- ACM: import of 200 certificates (checks, tags), one at a time vs a bounded thread pool.

moto answers over HTTP on loopback, in one Python process: the figures show certman's
own overhead plus moto's, not AWS latency (tens of ms per call), which makes the
concurrent variants matter more on AWS than here. Goal: the bounded-concurrency ACM
import is faster than the sequential one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import table
from certman.archive.bundle import seal_bundle
from certman.aws.acm import AcmDeployer
from certman.aws.clients import AwsClients
from certman.aws.kms import DataKeyCache, KmsKeyWrapper
from certman.aws.s3 import S3ArchiveStore
from certman.contracts.archive import ArchiveGetRequest, ArchivePutRequest
from certman.contracts.key_wrapper import KeyWrapper
from certman.keywrap.local import LocalMasterKey
from certman.models import EncryptionContext, KeyType
from certman.pki import generate_private_key, private_key_to_der
from tests.aws.pki import TestCA
from tests.components.moto_server import moto_server

REGION = "us-east-1"
THREADS = 8


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def contexts(count: int, purpose: str = "private-key") -> list[EncryptionContext]:
    return [
        EncryptionContext(certificate=f"host{i}", revision=1, purpose=purpose) for i in range(count)
    ]


def in_pool(threads: int, fn: Callable[..., Any], *iterables: Any) -> list[Any]:
    """``map`` with ``threads`` calls in flight (1: plain sequential calls)."""
    if threads == 1:
        return list(map(fn, *iterables))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(fn, *iterables))


def seal_rows(wrappers: dict[str, KeyWrapper], count: int) -> list[list[str]]:
    der = private_key_to_der(generate_private_key(KeyType.EC_P256))
    rows = []
    for label, wrapper in wrappers.items():
        threads = THREADS if "in flight" in label else 1
        ctxs = contexts(count)
        start = time.perf_counter()
        sealed = in_pool(threads, partial(wrapper.wrap, der), ctxs)
        seal_s = time.perf_counter() - start
        start = time.perf_counter()
        assert all(p == der for p in in_pool(threads, wrapper.unwrap, sealed, ctxs))
        open_s = time.perf_counter() - start
        again = "-"
        if "cache" in label:
            start = time.perf_counter()
            in_pool(threads, wrapper.unwrap, sealed, ctxs)
            again = rate(count, time.perf_counter() - start)
        rows.append([label, rate(count, seal_s), rate(count, open_s), again])
    return rows


def bundles(wrapper: KeyWrapper, count: int) -> list[ArchivePutRequest]:
    ca = TestCA()
    leaf = ca.leaf()
    key = private_key_to_der(generate_private_key(KeyType.EC_P256))
    requests = []
    for i in range(count):
        name = f"host{i}"
        sealed_key = wrapper.wrap(
            key, EncryptionContext(certificate=name, revision=1, purpose="private-key")
        )
        body = seal_bundle(
            wrapper,
            name=name,
            revision=1,
            certificate_pem=leaf.certificate_pem,
            chain_pem=leaf.chain_pem,
            sealed_key=sealed_key,
            metadata={"name": name, "revision": "1"},
        )
        requests.append(
            ArchivePutRequest(name=name, revision=1, body=body, metadata={"certificate": name})
        )
    return requests


def s3_rows(clients: AwsClients, wrapper: KeyWrapper, count: int) -> list[list[str]]:
    s3 = clients.client("s3")
    requests = bundles(wrapper, count)
    size = sum(len(r.body) for r in requests) // len(requests)
    rows = []
    for sse, many in (
        ("s3", False),
        ("s3", True),
        ("kms", False),
        ("kms", True),
        ("c", False),
        ("c", True),
    ):
        bucket = f"bench-{sse}-{'many' if many else 'one'}"
        s3.create_bucket(Bucket=bucket)
        store = S3ArchiveStore(
            s3=s3,
            bucket=bucket,
            prefix="archive/",
            sse=sse,
            key_wrapper=wrapper,
            kms_key_id="alias/bench",
        )
        threads = THREADS if many else 1
        begin = time.perf_counter()
        refs = store.put_many(requests) if many else [store.put(r) for r in requests]
        put_s = time.perf_counter() - begin
        begin = time.perf_counter()
        in_pool(threads, store.get, [ArchiveGetRequest(ref=r) for r in refs])
        get_s = time.perf_counter() - begin
        label = {"s3": "SSE-S3", "kms": "SSE-KMS + bucket key", "c": "SSE-C (key sealed)"}[sse]
        how = f"put_many / {THREADS} gets in flight" if many else "one at a time"
        rows.append(
            [
                f"{label}, {how}",
                f"{put_s:.2f} s ({rate(count, put_s)})",
                f"{get_s:.2f} s ({rate(count, get_s)})",
                f"{size:,} B",
            ]
        )
    return rows


def acm_rows(
    clients: AwsClients, count: int, reset: Callable[[], None]
) -> tuple[list[list[str]], float, float]:
    """First imports (new ARNs), then renewals re-imported to the same ARNs."""
    ca = TestCA()
    first = [ca.leaf(f"host{i}.example.com").request(name=f"host{i}") for i in range(count)]
    renewed = [ca.leaf(f"host{i}.example.com") for i in range(count)]

    def run(threads: int) -> tuple[float, float]:
        reset()
        target = AcmDeployer(acm=clients.client("acm"), name="acm", region=REGION)
        start = time.perf_counter()
        arns = [r.state["acm_arn"] for r in in_pool(threads, target.deploy, first)]
        imported = time.perf_counter() - start
        assert len(set(arns)) == count
        renewals = [
            leaf.request(name=f"host{i}", revision=2, acm_arn=arn)
            for i, (leaf, arn) in enumerate(zip(renewed, arns, strict=True))
        ]
        start = time.perf_counter()
        again = [r.state["acm_arn"] for r in in_pool(threads, target.deploy, renewals)]
        reimported = time.perf_counter() - start
        assert again == arns, "every renewal re-imports to its ARN"
        return imported, reimported

    seq_first, seq_renew = run(1)
    par_first, par_renew = run(THREADS)

    def row(how: str, seconds: float, base: float) -> list[str]:
        per = seconds / count * 1000
        return [how, f"{seconds:.2f} s", f"{per:.1f} ms", f"{base / seconds:.1f}x"]

    rows = [
        row("first import (new ARN), one at a time", seq_first, seq_first),
        row(f"first import (new ARN), {THREADS} in flight", par_first, seq_first),
        row("renewal re-import (same ARN), one at a time", seq_renew, seq_renew),
        row(f"renewal re-import (same ARN), {THREADS} in flight", par_renew, seq_renew),
    ]
    return rows, seq_first + seq_renew, par_first + par_renew


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seals", type=int, default=500)
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument("--certificates", type=int, default=200)
    args = parser.parse_args(argv)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true"
    )
    with (
        tempfile.TemporaryDirectory(prefix="certman-aws-bench-") as scratch,
        moto_server(Path(scratch)) as url,
    ):
        import urllib.request

        def reset() -> None:
            request = urllib.request.Request(url + "/moto-api/reset", method="POST")
            urllib.request.urlopen(request, timeout=10).close()

        # moto sometimes answers 500 when calls race (ListCertificates during imports):
        # botocore retries those, as it would AWS's own 5xx.
        clients = AwsClients(region=REGION, endpoint_url=url, max_attempts=4)
        kms = clients.client("kms")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/bench", TargetKeyId=key_id)
        local = LocalMasterKey.create(Path(scratch) / "master.key")
        wrappers: dict[str, KeyWrapper] = {
            "local master key": local,
            "aws-kms, one call at a time": KmsKeyWrapper(kms=kms, key_id="alias/bench"),
            f"aws-kms, {THREADS} calls in flight": KmsKeyWrapper(kms=kms, key_id="alias/bench"),
            "aws-kms + data-key cache (5 min, 100 uses)": KmsKeyWrapper(
                kms=kms, key_id="alias/bench", cache=DataKeyCache(max_age=300, max_uses=100)
            ),
        }
        seal = seal_rows(wrappers, args.seals)
        archive = s3_rows(clients, KmsKeyWrapper(kms=kms, key_id="alias/bench"), args.bundles)
        acm, sequential, concurrent = acm_rows(clients, args.certificates, reset)

    print(f"Seal + unseal: {args.seals} private keys, each under its own context (moto KMS)\n")
    print(table(["key wrapper", "seal", "unseal", "unseal again (cached)"], seal))
    print(f"\nS3 archive: {args.bundles} sealed bundles, put then get (SHA-256 checked)\n")
    print(table(["mode", "put", "get", "bundle size"], archive))
    print(f"\nACM import: {args.certificates} certificates (key/chain checks, tags)\n")
    print(table(["how", "total", "per certificate", "speed-up"], acm))
    return 0 if concurrent < sequential else 1


if __name__ == "__main__":
    sys.exit(main())
