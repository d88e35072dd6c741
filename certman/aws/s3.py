"""The `s3` archive store: bundles in S3 with SSE-S3, SSE-KMS (bucket key) or SSE-C."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certman.aws.errors import aws_call
from certman.errors import ArchiveError, ConfigError, IntegrityError, ValidationError
from certman.interfaces import (
    ArchiveGetRequest,
    ArchiveGetResponse,
    ArchivePutRequest,
    ArchiveRef,
    KeyWrapper,
)
from certman.models import EncryptionContext, WrappedKey

if TYPE_CHECKING:
    from certman.service.runtime import Runtime

SSE_MODES = ("s3", "kms", "c")


@dataclass
class S3ArchiveStore:
    """ArchiveStore on S3. Bodies are certman's encrypted bundles; S3 adds its own SSE.

    SSE-C: a fresh 256-bit customer key per object, sealed by the key wrapper (context:
    the certificate, revision and purpose "archive-sse-c") and returned in the ref's
    ``extra`` for the inventory; the key goes with every put, get and head. certman refuses
    to read such an object without its key itself (moto, unlike S3, would not).
    ``client_side``: the whole object, header included, is sealed once more before upload,
    so not even the certificate's name and revision are readable from the bucket.
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
            },
        }
        if self.sse == "s3":
            args["ServerSideEncryption"] = "AES256"
        elif self.sse == "kms":
            args["ServerSideEncryption"] = "aws:kms"
            args["BucketKeyEnabled"] = self.bucket_key
            if self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
        else:
            customer_key = os.urandom(32)
            sealed = self.key_wrapper.wrap(
                customer_key, _context(request.name, request.revision, "archive-sse-c")
            )
            extra["sse_c_key"] = sealed.to_json()
            args.update(_sse_c(customer_key))
        with aws_call("s3:PutObject", f"s3://{self.bucket}/{key}", ArchiveError):
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
        args.update(self._sse_c_args(ref, name, revision))
        with aws_call("s3:GetObject", f"s3://{self.bucket}/{ref.location}", IntegrityError):
            body = self.s3.get_object(**args)["Body"].read()
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
        args.update(self._sse_c_args(ref, name, revision))
        with aws_call("s3:HeadObject", f"s3://{self.bucket}/{ref.location}", IntegrityError):
            return dict(self.s3.head_object(**args))

    def copy(self, ref: ArchiveRef, destination: str) -> None:
        """Server-side copy (e.g. to another prefix), keeping SSE-C keys on both sides."""
        name, revision = _name_revision(ref.location)
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": destination,
            "CopySource": {"Bucket": self.bucket, "Key": ref.location},
        }
        sse_c = self._sse_c_args(ref, name, revision)
        if sse_c:
            args.update(sse_c)
            args.update({f"CopySource{k}": v for k, v in sse_c.items()})
        with aws_call("s3:CopyObject", f"s3://{self.bucket}/{ref.location}", ArchiveError):
            self.s3.copy_object(**args)

    def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        with aws_call("s3:ListObjectsV2", f"s3://{self.bucket}/{self.prefix}", ArchiveError):
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            ):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def _sse_c_args(self, ref: ArchiveRef, name: str, revision: int) -> dict[str, Any]:
        sealed = ref.extra.get("sse_c_key")
        if not sealed:
            if self.sse == "c":
                raise IntegrityError(
                    f"Archive object s3://{self.bucket}/{ref.location} is SSE-C encrypted but "
                    "the inventory holds no customer key for it; certman will not read it "
                    "without its key."
                )
            return {}
        key = self.key_wrapper.unwrap(
            WrappedKey.from_json(sealed), _context(name, revision, "archive-sse-c")
        )
        return _sse_c(key)


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


def build_archive_store(runtime: Runtime, settings: Mapping[str, Any]) -> S3ArchiveStore:
    where = f"[archive] of {runtime.config.path}"
    bucket = str(settings.get("bucket") or "")
    if not bucket:
        raise ConfigError(f'[archive] type is "s3" but bucket is empty in {where}.')
    sse = str(settings.get("sse") or "s3")
    if sse not in SSE_MODES:
        raise ConfigError(f"[archive] sse = {sse!r} in {where}; use one of: s3, kms, c.")
    return S3ArchiveStore(
        s3=runtime.aws.client("s3"),
        bucket=bucket,
        prefix=str(settings.get("prefix") or ""),
        sse=sse,
        key_wrapper=runtime.key_wrapper,
        kms_key_id=str(settings.get("kms_key_id") or ""),
        bucket_key=bool(settings.get("bucket_key", True)),
        client_side=bool(settings.get("client_side", False)),
    )
