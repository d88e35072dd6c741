"""The ACM listing adapter: a region's certificates as typed records, errors translated."""

from __future__ import annotations

import boto3
import pytest
from cryptography import x509

from certman.aws.acm_listing import AcmCertificate, certman_name, list_certificates
from certman.errors import OperationError
from tests.aws.conftest import Aws
from tests.selfsigned import self_signed_pem as self_signed


def test_the_listing_describes_each_certificate_in_certmans_words(aws: Aws) -> None:
    acm = aws.client("acm")
    cert, key = self_signed("legacy.example.com")
    arn = acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
    acm.add_tags_to_certificate(CertificateArn=arn, Tags=[{"Key": "certman:name", "Value": "web"}])
    (listed,) = list_certificates(acm, "us-east-1")
    assert isinstance(listed, AcmCertificate)
    assert listed.arn == arn
    assert listed.domains == ("legacy.example.com",)
    assert listed.serial == format(x509.load_pem_x509_certificate(cert).serial_number, "x")
    assert (listed.status, listed.type) == ("ISSUED", "IMPORTED")
    assert listed.key_algorithm == "EC_prime256v1"
    assert listed.not_after is not None and listed.not_after.tzinfo is not None
    assert certman_name(acm, arn) == "web"


def test_a_failed_listing_is_an_operation_error_naming_the_call(aws: Aws) -> None:
    broken = boto3.client("acm", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(OperationError, match="ListCertificates"):
        list_certificates(broken, "us-east-1")
