"""The archive store contract, run over every backend (local directory; S3 on moto with
SSE-S3, SSE-KMS and SSE-C): a bundle comes back byte for byte, or not at all."""

from __future__ import annotations

import hashlib

import pytest

from certman.contracts import supports
from certman.contracts.archive import (
    ArchiveGetRequest,
    ArchivePutRequest,
    ArchiveRef,
    SupportsPutMany,
)
from certman.errors import IntegrityError
from tests.conformance.conftest import ArchiveBackend, unique

BODY = b"sealed bundle bytes \x00\xff"


def put(backend: ArchiveBackend, name: str, revision: int = 1, body: bytes = BODY) -> ArchiveRef:
    return backend.runtime.archive.put(
        ArchivePutRequest(
            name=name,
            revision=revision,
            body=body,
            metadata={"certificate": name, "revision": str(revision), "fingerprint": "ab" * 32},
        )
    )


def get(backend: ArchiveBackend, ref: ArchiveRef) -> bytes:
    return backend.runtime.archive.get(ArchiveGetRequest(ref=ref)).body


def test_a_stored_bundle_reads_back_byte_for_byte(archive_backend: ArchiveBackend) -> None:
    ref = put(archive_backend, unique("web"))
    assert ref.sha256 == hashlib.sha256(BODY).hexdigest()
    assert get(archive_backend, ref) == BODY


def test_each_revision_is_its_own_bundle(archive_backend: ArchiveBackend) -> None:
    name = unique("web")
    first, second = put(archive_backend, name, 1, b"one"), put(archive_backend, name, 2, b"two")
    assert first.location != second.location
    assert (get(archive_backend, first), get(archive_backend, second)) == (b"one", b"two")


def test_a_bundle_changed_in_the_store_is_refused_on_read(archive_backend: ArchiveBackend) -> None:
    assert archive_backend.tamper is not None
    ref = put(archive_backend, unique("web"))
    archive_backend.tamper(ref.location, BODY[:-1] + b"\xfe")
    with pytest.raises(IntegrityError):
        get(archive_backend, ref)


def test_a_ref_whose_sha256_does_not_match_is_refused(archive_backend: ArchiveBackend) -> None:
    ref = put(archive_backend, unique("web"))
    wrong = ArchiveRef(location=ref.location, sha256="0" * 64, extra=ref.extra)
    with pytest.raises(IntegrityError):
        get(archive_backend, wrong)


def test_list_names_every_bundle_under_a_prefix_and_no_other(
    archive_backend: ArchiveBackend,
) -> None:
    name, other = unique("web"), unique("api")
    refs = [put(archive_backend, name, 1), put(archive_backend, name, 2)]
    put(archive_backend, other, 1)
    listed = archive_backend.runtime.archive.list(name + "/")
    assert sorted(listed) == sorted(ref.location for ref in refs)


def test_put_many_stores_every_bundle_in_order(archive_backend: ArchiveBackend) -> None:
    archive_backend.skip_unless("put-many")
    store = archive_backend.runtime.archive
    if not supports(store, SupportsPutMany):
        pytest.skip(f"{archive_backend.type_name} does not implement SupportsPutMany")
    names = [unique(f"bulk{i}") for i in range(5)]
    requests = [ArchivePutRequest(name=n, revision=1, body=f"bundle {n}".encode()) for n in names]
    refs = store.put_many(requests)  # type: ignore[attr-defined]
    assert [get(archive_backend, ref) for ref in refs] == [r.body for r in requests]
    assert [ref.sha256 for ref in refs] == [hashlib.sha256(r.body).hexdigest() for r in requests]
