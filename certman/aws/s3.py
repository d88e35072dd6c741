"""The `s3` archive store: bundles in S3 with SSE-S3, SSE-KMS (bucket key) or SSE-C."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certman.aws.errors import Hints, aws_call
from certman.aws.s3_names import bucket_problem, normalise_prefix
from certman.contracts.archive import (
    ArchiveGetRequest,
    ArchiveGetResponse,
    ArchivePutRequest,
    ArchiveRef,
)
from certman.contracts.issuer import PreflightResult
from certman.contracts.key_wrapper import KeyWrapper
from certman.errors import (
    ArchiveError,
    CertmanError,
    ConfigError,
    IntegrityError,
    ValidationError,
)
from certman.models import EncryptionContext, WrappedKey

if TYPE_CHECKING:
    from datetime import datetime

    from certman.contracts.build_context import BuildContext

SSE_MODES = ("s3", "kms", "c")
# put_many: S3 is latency-bound, a few uploads in flight hide most of it.
PUT_CONCURRENCY = 8
_BUCKET = "create the bucket or fix [archive] bucket"
# The preflight's probe object, under the prefix; never a NAME/NNNNNN.bundle key.
PROBE_NAME = ".certman-preflight"
PROBE_CHECK = "s3 archive"
_OBJECT = "restore it from a previous object version or a backup"


@dataclass
class S3ArchiveStore:
    """ArchiveStore on S3. Bodies are certman's encrypted bundles; S3 adds its own SSE.

    SSE-C: a fresh 256-bit customer key per object, sealed by the key wrapper (context:
    the certificate, revision and purpose "archive-sse-c") and returned in the ref's
    ``extra`` for the inventory; the key goes with every put, get and head. certman refuses
    to read such an object without its key itself (moto, unlike S3, would not).
    ``client_side``: bundles are already sealed by the key wrapper (archive/bundle.py), but
    their first line is a readable header (certificate name, revision, wrapper, KMS key
    ARN, encrypted data key). With client_side the whole bundle, header included, is sealed
    once more under its own data key (purpose "archive-object") before upload, so a reader
    of the bucket learns nothing from the body; the object metadata (certificate, revision,
    fingerprint) stays readable, as S3 needs it to list and find objects.
    Every read checks the SHA-256 of what was stored; in a versioned bucket the ref names
    the object version written, so a later overwrite cannot change what a revision reads.
    """

    s3: Any
    bucket: str
    prefix: str
    sse: str
    key_wrapper: KeyWrapper
    kms_key_id: str = ""
    bucket_key: bool = True
    client_side: bool = False
    store_type: str = "s3"

    def key_for(self, name: str, revision: int) -> str:
        if not name or "/" in name or ".." in name:
            raise ValidationError(f"Certificate name {name!r} cannot be an archive key.")
        return f"{self.prefix}{name}/{revision:06d}.bundle"

    def put(self, request: ArchivePutRequest) -> ArchiveRef:
        key = self.key_for(request.name, request.revision)
        body = request.body
        if self.client_side:
            body = (
                self.key_wrapper.wrap(
                    body, _context(request.name, request.revision, "archive-object")
                )
                .to_json()
                .encode()
            )
        sha256 = hashlib.sha256(body).hexdigest()
        extra: dict[str, str] = {}
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/octet-stream",
            "Metadata": {
                "certificate": request.name,
                "revision": str(request.revision),
                "fingerprint": str(request.metadata.get("fingerprint", "")),
                "sha256": sha256,
                "sse": self.sse,
            },
            # S3 checks the body against this as it arrives (a torn upload is refused).
            "ChecksumAlgorithm": "SHA256",
        }
        customer_key = os.urandom(32) if self.sse == "c" else None
        if customer_key is not None:
            sealed = self.key_wrapper.wrap(
                customer_key, _context(request.name, request.revision, "archive-sse-c")
            )
            extra["sse_c_key"] = sealed.to_json()
        args.update(self._encryption(customer_key))
        with self._put_call(key):
            answer = self.s3.put_object(**args)
        if answer.get("VersionId"):
            extra["version_id"] = str(answer["VersionId"])
        if self.client_side:
            extra["client_side"] = "yes"
        return ArchiveRef(location=key, sha256=sha256, extra=extra)

    def get(self, request: ArchiveGetRequest) -> ArchiveGetResponse:
        ref = request.ref
        name, revision = _name_revision(ref.location)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": ref.location}
        if ref.extra.get("version_id"):
            args["VersionId"] = ref.extra["version_id"]
        sse_c = self._sse_c_args(ref, name, revision)
        args.update(sse_c)
        where = f"s3://{self.bucket}/{ref.location}"
        with self._call("s3:GetObject", where, IntegrityError, missing=_OBJECT):
            answer = self.s3.get_object(**args)
            stored_sse = answer.get("Metadata", {}).get("sse", "")
            if stored_sse == "c" and not sse_c:
                # S3 itself refuses this with 400; moto does not, so certman checks too.
                answer["Body"].close()
                raise _keyless(where)
            body = answer["Body"].read()
        if hashlib.sha256(body).hexdigest() != ref.sha256:
            raise IntegrityError(
                f"Archive object s3://{self.bucket}/{ref.location} was modified (SHA-256 "
                "mismatch); restore it from a previous object version."
            )
        if ref.extra.get("client_side") == "yes":
            body = self.key_wrapper.unwrap(
                WrappedKey.from_json(body.decode()), _context(name, revision, "archive-object")
            )
        return ArchiveGetResponse(body=body)

    def head(self, ref: ArchiveRef) -> Mapping[str, Any]:
        name, revision = _name_revision(ref.location)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": ref.location}
        if ref.extra.get("version_id"):
            args["VersionId"] = ref.extra["version_id"]
        args.update(self._sse_c_args(ref, name, revision))
        where = f"s3://{self.bucket}/{ref.location}"
        with self._call("s3:HeadObject", where, IntegrityError, missing=_OBJECT):
            head = dict(self.s3.head_object(**args))
        if head.get("Metadata", {}).get("sse") == "c" and "SSECustomerKey" not in args:
            raise _keyless(where)
        return head

    def put_many(
        self, requests: Sequence[ArchivePutRequest], *, flush: bool = True
    ) -> list[ArchiveRef]:
        """Store many bundles with a few uploads in flight; refs in the order of ``requests``.

        Every bundle is stored when this returns, whatever ``flush`` says (S3 answers a PUT
        once the object is durable); on an error some may be stored already, which is
        harmless: no revision refers to them until its ref is recorded.
        """
        if len(requests) <= 1:
            return [self.put(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(PUT_CONCURRENCY, len(requests))) as pool:
            return list(pool.map(self.put, requests))

    def flush(self) -> None:
        """Nothing to wait for: every PUT was durable when it returned."""

    def copy(self, ref: ArchiveRef, destination: str) -> None:
        """Server-side copy (e.g. to another prefix), keeping SSE-C keys on both sides."""
        name, revision = _name_revision(ref.location)
        source: dict[str, str] = {"Bucket": self.bucket, "Key": ref.location}
        if ref.extra.get("version_id"):
            source["VersionId"] = ref.extra["version_id"]
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": destination,
            "CopySource": source,
        }
        sse_c = self._sse_c_args(ref, name, revision)
        if sse_c:
            args.update(sse_c)
            args.update({f"CopySource{k}": v for k, v in sse_c.items()})
        with self._call("s3:CopyObject", f"s3://{self.bucket}/{ref.location}", missing=_OBJECT):
            self.s3.copy_object(**args)

    def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        where = f"s3://{self.bucket}/{self.prefix}"
        with self._call("s3:ListObjectsV2", where):
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            ):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def names_with_bundles(self, names: Sequence[str]) -> set[str]:
        """SupportsNameListing: one ListObjectsV2 walk (Delimiter "/": the names are the
        common prefixes) over only the key range the names span, not a listing per name."""
        wanted = {f"{self.prefix}{name}/": name for name in names}
        if not wanted:
            return set()
        last = max(wanted)
        held: set[str] = set()
        with self._call("s3:ListObjectsV2", f"s3://{self.bucket}/{self.prefix}"):
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=self.prefix,
                Delimiter="/",
                StartAfter=min(wanted)[:-1],  # just before the first name's prefix
            ):
                found = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
                held.update(wanted[p] for p in found if p in wanted)
                listed = found + [item["Key"] for item in page.get("Contents", [])]
                if listed and max(listed) >= last:
                    break  # past the last name asked for
        return held

    def preflight(self, now: datetime) -> PreflightResult:
        """Is the bucket there and can certman store bundles in it?

        HeadBucket, then a small probe object put under the prefix with the encryption
        bundles get (so an SSE-KMS key certman may not use fails here too) and removed
        again, leaving the bucket as it was: in a versioned bucket (versioning enabled or
        suspended) the probe's own version is deleted by its version id, so no delete
        marker is left behind. A bucket whose object lock gives every new object a default
        retention would keep each probe for that long: there the upload is not probed.
        """
        key = f"{self.prefix}{PROBE_NAME}"
        where = f"s3://{self.bucket}"
        try:
            with self._call("s3:HeadBucket", where):
                self.s3.head_bucket(Bucket=self.bucket)
            if self._retains_new_objects():
                message = (
                    f"bucket {self.bucket} exists; its object lock retains every new object, "
                    "so no probe was uploaded (uploads are checked by the first bundle)."
                )
                return PreflightResult(ok=True, checks=((PROBE_CHECK, True, message),))
            versioning = self._versioning()
            with self._put_call(key):
                answer = self.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=b"certman preflight probe\n",
                    ContentType="text/plain",
                    Metadata={"purpose": "preflight"},
                    # SSE-C: a throwaway customer key, as nobody reads the probe back
                    **self._encryption(os.urandom(32) if self.sse == "c" else None),
                )
        except ArchiveError as e:
            return PreflightResult(ok=False, checks=((PROBE_CHECK, False, e.message),))
        left = self._remove_probe(key, versioning, answer.get("VersionId"))
        message = (
            f"bucket {self.bucket} exists and takes new bundles under "
            f"s3://{self.bucket}/{self.prefix} with SSE-{self.sse.upper()}.{left}"
        )
        return PreflightResult(ok=True, checks=((PROBE_CHECK, True, message),))

    def _remove_probe(self, key: str, versioning: str | None, version_id: str | None) -> str:
        """Delete the probe so that nothing of it stays; '' or a sentence saying what stays.

        A plain DeleteObject in a versioned bucket only hides the object behind a new delete
        marker; deleting a version by its id removes it for good and adds no marker. With
        versioning suspended a put writes the "null" version (S3 User Guide, "Working with
        objects in a versioning-suspended bucket").
        """
        if version_id is None and versioning == "Suspended":
            version_id = "null"
        if version_id is None and versioning == "Enabled":
            return (
                " The probe object's version stays: S3 did not say which version the probe wrote."
            )
        args = {"VersionId": version_id} if version_id else {}
        try:
            with self._call(
                "s3:DeleteObjectVersion" if args else "s3:DeleteObject", f"s3://{self.bucket}/{key}"
            ):
                self.s3.delete_object(Bucket=self.bucket, Key=key, **args)
        except ArchiveError as e:  # certman never needs to delete: still writable
            return f" The probe object stays ({e.message})"
        return ""

    def _versioning(self) -> str | None:
        """The bucket's versioning status ("Enabled", "Suspended"), None when never enabled
        or when certman may not ask (the version id the put returns then decides)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            status = self.s3.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except (ClientError, BotoCoreError):
            return None
        return str(status) if status else None

    def _retains_new_objects(self) -> bool:
        """Whether object lock gives new objects a default retention (the probe could not be
        deleted). No configuration, or no permission to read it: False."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.s3.get_object_lock_configuration(Bucket=self.bucket)
        except (ClientError, BotoCoreError):
            return False
        lock = answer.get("ObjectLockConfiguration", {})
        return lock.get("ObjectLockEnabled") == "Enabled" and bool(
            lock.get("Rule", {}).get("DefaultRetention")
        )

    def _encryption(self, customer_key: bytes | None) -> dict[str, Any]:
        """The server-side encryption parameters of a PutObject under [archive] sse."""
        if self.sse == "s3":
            return {"ServerSideEncryption": "AES256"}
        if self.sse == "kms":
            args: dict[str, Any] = {
                "ServerSideEncryption": "aws:kms",
                "BucketKeyEnabled": self.bucket_key,
            }
            if self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
            return args
        assert customer_key is not None
        return _sse_c(customer_key)

    def _put_call(self, key: str) -> AbstractContextManager[None]:
        written_with = (
            f"KMS key {self.kms_key_id}"
            if self.kms_key_id
            else f"The default KMS key of bucket {self.bucket}"
        )
        return self._call("s3:PutObject", f"s3://{self.bucket}/{key}", kms_key=written_with)

    def _call(
        self,
        action: str,
        where: str,
        error: type[CertmanError] = ArchiveError,
        *,
        missing: str = _BUCKET,
        kms_key: str = "",
    ) -> AbstractContextManager[None]:
        """aws_call for S3: SSE-KMS failures name [archive] kms_key_id, not [kms] key_id."""
        hints = Hints(
            missing=missing,
            kms_key=kms_key or f"The SSE-KMS key of {where}",
            kms_setting="[archive] kms_key_id",
        )
        return aws_call(action, where, error, hints)

    def _sse_c_args(self, ref: ArchiveRef, name: str, revision: int) -> dict[str, Any]:
        """The SSE-C parameters of the object ``ref`` names, from what it was written with.

        Never from the current [archive] sse: objects written before a switch keep their
        mode. A ref without a customer key is read without one; an object that is SSE-C
        all the same (its key lost from the inventory) is refused on its metadata.
        """
        sealed = ref.extra.get("sse_c_key")
        if not sealed:
            return {}
        key = self.key_wrapper.unwrap(
            WrappedKey.from_json(sealed), _context(name, revision, "archive-sse-c")
        )
        return _sse_c(key)


def _keyless(where: str) -> IntegrityError:
    return IntegrityError(
        f"Archive object {where} is SSE-C encrypted but the inventory holds no customer key "
        "for it; certman will not read it without its key. Restore the revision's archive "
        "record (archive_extra) from a database backup."
    )


def _sse_c(customer_key: bytes) -> dict[str, Any]:
    """The SSE-C parameters. botocore base64-encodes the key and adds its MD5 header itself
    (the MD5 lets S3 check that the key arrived whole)."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": customer_key}


def _context(name: str, revision: int, purpose: str) -> EncryptionContext:
    return EncryptionContext(certificate=name, revision=revision, purpose=purpose)


def _name_revision(location: str) -> tuple[str, int]:
    parts = location.rstrip("/").split("/")
    try:
        return parts[-2], int(parts[-1].split(".")[0])
    except (IndexError, ValueError):
        raise IntegrityError(f"Archive location {location!r} is not one certman wrote.") from None


def build_archive_store(context: BuildContext, settings: Mapping[str, Any]) -> S3ArchiveStore:
    """The S3 store from [archive]; every setting is checked here, before anything is issued."""
    where = f"[archive] of {context.config_path}"
    bucket = str(settings.get("bucket") or "")
    if not bucket:
        raise ConfigError(f'[archive] type is "s3" but bucket is empty in {where}.')
    problem = bucket_problem(bucket)
    if problem:
        raise ConfigError(
            f"archive.bucket = {bucket!r} in {context.config_path} is not an S3 bucket: "
            f'{problem} (e.g. "certman-archive").'
        )
    try:
        prefix = normalise_prefix(str(settings.get("prefix") or ""))
    except ValueError as e:
        raise ConfigError(
            f"archive.prefix = {settings.get('prefix')!r} in {context.config_path} cannot "
            f'prefix S3 keys: {e}; use a path such as "archive/" or "".'
        ) from None
    sse = str(settings.get("sse") or "s3")
    if sse not in SSE_MODES:
        raise ConfigError(f"[archive] sse = {sse!r} in {where}; use one of: s3, kms, c.")
    return S3ArchiveStore(
        s3=context.aws().client("s3"),
        bucket=bucket,
        prefix=prefix,
        sse=sse,
        key_wrapper=context.key_wrapper(),
        kms_key_id=str(settings.get("kms_key_id") or ""),
        bucket_key=bool(settings.get("bucket_key", True)),
        client_side=bool(settings.get("client_side", False)),
    )
