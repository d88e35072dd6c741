"""PrivateCA: the Issuer backend that signs leaves with an in-memory intermediate key."""

from __future__ import annotations

import hashlib

from certman.ca.certificates import certificate_to_pem, der_certificate_to_pem
from certman.ca.crl import sign_crl
from certman.ca.hierarchy import CAHierarchy
from certman.ca.keys import PrivateKey
from certman.ca.policy import SigningPolicy
from certman.ca.profiles import LeafProfile, SignedLeaf
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certman.contracts.issuer import (
    CRLRequest,
    CRLResponse,
    IssuePlan,
    IssuePlanRequest,
    IssueRequest,
    IssueResponse,
    KeyIssueRequest,
    PrecheckRequest,
)
from certman.errors import ValidationError
from certman.models import CertificateFacts, KeyType


class PrivateCA:
    """One private CA: checks its signing policy, then signs with the intermediate key.

    Implements Issuer, SupportsKeyIssue, SupportsPrecheck, SupportsIssuePlan and
    SupportsCRL. The
    intermediate key stays in memory for the life of the object; callers unseal it once
    and cache the instance.
    Instances hold no mutable state, so one may serve several threads.
    """

    def __init__(
        self,
        *,
        name: str,
        root_certificate: x509.Certificate,
        intermediate_certificate: x509.Certificate,
        intermediate_key: PrivateKey,
        policy: SigningPolicy,
    ) -> None:
        if not isinstance(policy, SigningPolicy):
            raise TypeError("policy must be a SigningPolicy.")
        _check_chain(name, root_certificate, intermediate_certificate, intermediate_key)
        self.name = name
        self.policy = policy
        self.root_certificate = root_certificate
        self.intermediate_certificate = intermediate_certificate
        self._intermediate_key = intermediate_key
        self._profile = LeafProfile(
            issuer_certificate=intermediate_certificate,
            issuer_key=intermediate_key,
            policy=policy,
        )
        self._chain_pem = certificate_to_pem(intermediate_certificate)

    @classmethod
    def from_hierarchy(cls, hierarchy: CAHierarchy, policy: SigningPolicy) -> PrivateCA:
        return cls(
            name=hierarchy.name,
            root_certificate=hierarchy.root_certificate,
            intermediate_certificate=hierarchy.intermediate_certificate,
            intermediate_key=hierarchy.intermediate_key,
            policy=policy,
        )

    def __repr__(self) -> str:
        return f"PrivateCA(name={self.name!r})"

    def precheck(self, request: PrecheckRequest) -> None:
        """Raise PolicyError/ValidationError if ``issue`` would refuse this request."""
        self.policy.check(request.identifiers, request.key_type, request.validity, ca=self.name)
        self._profile.check_not_after(request.now, request.validity)

    def plan_issue(self, request: IssuePlanRequest) -> IssuePlan:
        """A fresh serial and the validity of a leaf issued now; PolicyError past the CA."""
        serial, not_before, not_after = self._profile.plan(request.now, request.validity)
        return IssuePlan(serial=serial, not_before=not_before, not_after=not_after)

    def issue(self, request: IssueRequest) -> IssueResponse:
        """Sign one leaf for ``request.identifiers``; the chain is the intermediate alone."""
        identifiers = self.policy.check(
            request.identifiers, request.key_type, request.validity, ca=self.name
        )
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem)
        except (ValueError, TypeError) as e:
            raise ValidationError("csr_pem is not a PEM certificate signing request.") from e
        leaf = self._profile.sign(
            csr=csr,
            key_type=KeyType.parse(request.key_type),
            identifiers=identifiers,
            now=request.now,
            validity=request.validity,
            serial=request.serial,
            not_before=request.not_before,
        )
        return self._response(leaf)

    def issue_for_key(self, request: KeyIssueRequest) -> IssueResponse:
        """Sign one leaf for a key certman generated in this process (no CSR round trip)."""
        identifiers = self.policy.check(
            request.identifiers, request.key_type, request.validity, ca=self.name
        )
        public_key: object = request.public_key
        if public_key is None:
            try:
                public_key = serialization.load_der_public_key(request.public_key_der)
            except (ValueError, TypeError) as e:
                raise ValidationError("public_key_der is not a DER SubjectPublicKeyInfo.") from e
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValidationError("public_key_der holds an unsupported key type.")
        leaf = self._profile.sign_leaf(
            public_key=public_key,
            key_type=KeyType.parse(request.key_type),
            identifiers=identifiers,
            now=request.now,
            validity=request.validity,
            serial=request.serial,
            not_before=request.not_before,
            public_key_der=request.public_key_der,
        )
        return self._response(leaf)

    def _response(self, leaf: SignedLeaf) -> IssueResponse:
        # The facts are what the profile put in the leaf, so the caller need not parse it.
        return IssueResponse(
            certificate_pem=der_certificate_to_pem(leaf.der),
            chain_pem=self._chain_pem,
            facts=CertificateFacts(
                serial=format(leaf.serial, "x"),
                fingerprint_sha256=hashlib.sha256(leaf.der).hexdigest(),
                not_before=leaf.not_before,
                not_after=leaf.not_after,
                public_key_der=leaf.public_key_der,
            ),
        )

    def crl(self, request: CRLRequest) -> CRLResponse:
        """A CRL for this CA's leaves, signed by the intermediate (RFC 5280 section 5)."""
        pem = sign_crl(
            request,
            issuer_certificate=self.intermediate_certificate,
            issuer_key=self._intermediate_key,
        )
        return CRLResponse(crl_pem=pem)


def _check_chain(
    name: str, root: x509.Certificate, intermediate: x509.Certificate, key: PrivateKey
) -> None:
    """Refuse a key that does not belong to the intermediate, or an intermediate not under root."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != intermediate.public_key().public_bytes(
        der, spki
    ):
        raise ValidationError(
            f"The intermediate key of CA {name!r} does not match its intermediate certificate; "
            "unseal the key that was created with it."
        )
    try:
        intermediate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise ValidationError(
            f"The intermediate certificate of CA {name!r} was not signed by its root "
            "certificate; load the matching pair."
        ) from e
    try:
        constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ValidationError(
            f"The intermediate certificate of CA {name!r} is not a CA certificate "
            "(BasicConstraints cA is not set)."
        )
