"""ACME problem documents keep their RFC 7807 / RFC 8555 section 6.7 fields as certman errors."""

from __future__ import annotations

import pytest
from certman.acme_client.issuer import AcmeIssuer
from certman.acme_client.problems import (
    AcmeProblem,
    PolicyRefusal,
    ProblemError,
    Subproblem,
)

from certman.errors import PolicyError
from tests.acme.ari_server import AriServer, Canned
from tests.acme.conftest import BLOCKED, AcmeHome

MALFORMED = "urn:ietf:params:acme:error:malformed"
REJECTED = "urn:ietf:params:acme:error:rejectedIdentifier"
CAA = "urn:ietf:params:acme:error:caa"

COMPOUND = {
    "type": MALFORMED,
    "detail": "Some of the identifiers requested were rejected",
    "subproblems": [
        {
            "type": REJECTED,
            "detail": "This CA will not issue for this name",
            "identifier": {"type": "dns", "value": "a.problems.example"},
        },
        {
            "type": CAA,
            "detail": "CAA record forbids issuance",
            "identifier": {"type": "dns", "value": "b.problems.example"},
        },
    ],
}


def acme_issuer(acme_home: AcmeHome) -> AcmeIssuer:
    issuer = acme_home.runtime().issuer("pebble")
    assert isinstance(issuer, AcmeIssuer)
    issuer.account.ensure()
    return issuer


def test_a_blocked_name_at_pebble_keeps_type_detail_and_status(acme_home: AcmeHome) -> None:
    acme_home.configure()
    issuer = acme_issuer(acme_home)
    with pytest.raises(PolicyRefusal) as refused:
        issuer.client.new_order((f"www.{BLOCKED}",), replaces=None, profile=None)
    error = refused.value
    assert isinstance(error, PolicyError) and error.exit_code == 2 and not error.retryable
    assert error.type == REJECTED and error.code == "rejectedIdentifier"
    assert error.status == 400
    assert BLOCKED in error.detail
    assert f"{REJECTED}: {error.detail}" in error.message


def test_subproblems_are_parsed_with_their_identifiers(acme_home: AcmeHome, ari: AriServer) -> None:
    acme_home.configure(directory=ari.directory_url)
    issuer = acme_issuer(acme_home)
    ari.canned["/order-plz"] = Canned(status=400, body=COMPOUND)
    names = ("a.problems.example", "b.problems.example")
    with pytest.raises(AcmeProblem) as refused:
        issuer.client.new_order(names, replaces=None, profile=None)
    error = refused.value
    assert isinstance(error, ProblemError) and not error.retryable
    assert (error.type, error.status, error.identifier) == (MALFORMED, 400, None)
    assert error.detail == "Some of the identifiers requested were rejected"
    assert error.subproblems == (
        Subproblem(
            type=REJECTED,
            detail="This CA will not issue for this name",
            identifier="a.problems.example",
        ),
        Subproblem(type=CAA, detail="CAA record forbids issuance", identifier="b.problems.example"),
    )
    assert [sub.code for sub in error.subproblems] == ["rejectedIdentifier", "caa"]


def test_the_operator_sees_each_subproblem_under_its_identifier(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    acme_home.configure(directory=ari.directory_url)
    ari.canned["/order-plz"] = Canned(status=400, body=COMPOUND)
    result = acme_home.issue("web", "a.problems.example", "b.problems.example")
    assert result.exit_code == 1
    assert f"{MALFORMED}: Some of the identifiers requested were rejected" in result.stderr
    assert (
        f"a.problems.example: {REJECTED}: This CA will not issue for this name; "
        f"b.problems.example: {CAA}: CAA record forbids issuance"
    ) in result.stderr
    assert "Traceback" not in result.stderr
