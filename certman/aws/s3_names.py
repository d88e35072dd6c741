"""S3 bucket names and key prefixes as [archive] gives them: checked before any call."""

from __future__ import annotations

import re

# 3-63 characters as S3 names buckets today; up to 255 with capitals and underscores for
# buckets made in us-east-1 before 2018 (botocore's own check is the same set, 1-255).
_BUCKET_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,253}[a-zA-Z0-9]")
_ACCESS_POINT = re.compile(
    r"arn:aws[a-z-]*:s3(-object-lambda|-outposts)?:[a-z0-9-]*:[0-9]{12}:"
    r"(accesspoint|outpost)[/:][a-zA-Z0-9./:-]{1,255}"
)
# S3 keys are at most 1,024 bytes: leave room for NAME/NNNNNN.bundle.
PREFIX_MAX_BYTES = 512


def bucket_problem(bucket: str) -> str:
    """Why ``bucket`` cannot name an S3 bucket ("" when it can).

    As permissive as botocore (which refuses the rest before sending): legacy buckets in
    us-east-1 may hold capitals and underscores, and access point ARNs are accepted.
    """
    if bucket.startswith("arn:"):
        return "" if _ACCESS_POINT.fullmatch(bucket) else "it is not an S3 access point ARN"
    if not _BUCKET_NAME.fullmatch(bucket):
        return "a bucket name has 3-63 lowercase letters, digits, dots and hyphens"
    return ""


def normalise_prefix(prefix: str) -> str:
    """The key prefix as certman uses it: "" or a path ending in "/"; ValueError if unusable."""
    if not prefix:
        return ""
    if prefix.startswith("/"):
        raise ValueError("it starts with '/'")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
        raise ValueError("it holds a control character")
    if len(prefix.encode()) > PREFIX_MAX_BYTES:
        raise ValueError(f"it is longer than {PREFIX_MAX_BYTES} bytes")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    if any(part in ("", ".", "..") for part in prefix[:-1].split("/")):
        raise ValueError("it has an empty, '.' or '..' part")
    return prefix
