"""Names and identifiers are checked whole: a trailing newline is not part of a valid name."""

from __future__ import annotations

from pathlib import Path

import pytest

from certman.errors import ConfigError, IntegrityError, IssuanceError, ValidationError
from certman.names import check_name, name_problem


@pytest.mark.parametrize("name", ["web", "a", "web-1.prod_eu", "A" * 63])
def test_a_valid_name_is_accepted(name: str) -> None:
    assert name_problem(name, max_length=63) == ""
    check_name(name, "CA", max_length=63)


@pytest.mark.parametrize(
    "name", ["web\n", "web\r\n", "\nweb", "we\nb", "", "-web", ".web", "a/b", "A" * 64, "wéb"]
)
def test_a_name_that_is_not_whole_letters_digits_and_punctuation_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=r"CA name .* is not valid; use 1-63 letters"):
        check_name(name, "CA", max_length=63)


def test_a_region_with_a_trailing_newline_is_refused() -> None:
    from certman.aws.clients import check_region

    assert check_region("us-east-1", "--region") == "us-east-1"
    with pytest.raises(ValidationError, match="not an AWS region name"):
        check_region("us-east-1\n", "--region")
    with pytest.raises(ConfigError):
        check_region("123\n", "aws.region")


@pytest.mark.parametrize(
    "bucket", ["certman-archive\n", "arn:aws:s3:us-east-1:123456789012:accesspoint/ap\n"]
)
def test_a_bucket_with_a_trailing_newline_is_refused(bucket: str) -> None:
    from certman.aws.s3_names import bucket_problem

    assert bucket_problem(bucket.rstrip("\n")) == ""
    assert bucket_problem(bucket) != ""


def test_an_acme_token_with_a_trailing_newline_is_refused() -> None:
    from certman.acme_client.solvers.http01 import _checked

    assert _checked("abc_DEF-123") == "abc_DEF-123"
    with pytest.raises(IssuanceError, match="malformed challenge token"):
        _checked("abc\n")


def test_an_archive_location_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    from certman.archive.local import LocalArchiveStore

    store = LocalArchiveStore(tmp_path)
    with pytest.raises(IntegrityError, match="is not a bundle"):
        store._paths("web/000001.bundle\n")
