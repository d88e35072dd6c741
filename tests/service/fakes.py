"""A fake Issuer for lifecycle tests: signs with a real private CA, or fails as told.

Registered in a test's registry as ``"tests.service.fakes:build"`` and configured as
``[issuers.NAME] type = "fake"`` with optional ``ca`` (the private CA that signs, default
"default"), ``failure`` ("retryable" or "permanent"), ``fail_names`` (only those
certificates fail; all when empty) and ``fail_from_revision`` (only from that revision on).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from certman.contracts.build_context import BuildContext
from certman.contracts.issuer import Issuer, IssueRequest, IssueResponse
from certman.errors import IssuanceError
from certman.models import KeyType
from certman.pki import build_csr, generate_private_key


class FakeIssuer:
    """Implements Issuer only (no SupportsKeyIssue), so certman sends it a CSR."""

    def __init__(
        self,
        inner: Issuer,
        *,
        name: str = "fake",
        failure: str | None = None,
        fail_names: tuple[str, ...] = (),
        fail_from_revision: int = 1,
        retry_after: datetime | None = None,
        wrong_key: bool = False,
    ) -> None:
        self.inner = inner
        self.name = name
        self.failure = failure
        self.fail_names = fail_names
        self.fail_from_revision = fail_from_revision
        self.retry_after = retry_after
        self.wrong_key = wrong_key
        self.requests: list[IssueRequest] = []

    def issue(self, request: IssueRequest) -> IssueResponse:
        self.requests.append(request)
        applies = (not self.fail_names or request.name in self.fail_names) and (
            request.revision >= self.fail_from_revision
        )
        if self.failure and applies:
            raise IssuanceError(
                f"The fake issuer refused {request.name} ({self.failure}).",
                retryable=self.failure == "retryable",
                retry_after=self.retry_after,
            )
        if self.wrong_key:
            other = generate_private_key(KeyType(request.key_type))
            request = _with_csr(request, build_csr(other, list(request.identifiers)))
        return self.inner.issue(request)


def _with_csr(request: IssueRequest, csr_pem: bytes) -> IssueRequest:
    from dataclasses import replace

    return replace(request, csr_pem=csr_pem)


def build(context: BuildContext, settings: Mapping[str, Any]) -> FakeIssuer:
    """Registry factory for ``type = "fake"``."""
    return FakeIssuer(
        context.private_ca(str(settings.get("ca", "default"))),
        name=str(settings["name"]),
        failure=settings.get("failure"),
        fail_names=tuple(settings.get("fail_names", ())),
        fail_from_revision=int(settings.get("fail_from_revision", 1)),
    )
