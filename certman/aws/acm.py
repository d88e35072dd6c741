"""The `acm` target: import on first deployment, re-import to the same ARN on every renewal."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from certman.aws.clients import region_of, valid_region
from certman.aws.errors import aws_call
from certman.errors import ConfigError, DeployError, ValidationError
from certman.interfaces import (
    DeployRequest,
    DeployResponse,
    PlanRequest,
    PlanResponse,
    RollbackRequest,
    VerifyRequest,
    VerifyResponse,
)

if TYPE_CHECKING:
    from certman.service.runtime import Runtime

KNOWN_KEYS = {"type", "name", "region"}
# ListCertificates returns only RSA-2048 certificates unless asked for every key type.
KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]
TAG_NAME = "certman:name"
TAG_REVISION = "certman:revision"


def acm_serial(value: str) -> str:
    """A serial as certman writes it (bare lowercase hex) from what ACM reports.

    ACM writes colon-separated hex bytes ("0a:1b:..."); moto writes the decimal integer.
    """
    value = value.strip()
    if not value:
        return ""
    if ":" not in value and value.isdigit():
        return format(int(value), "x")
    return value.replace(":", "").lower().lstrip("0") or "0"


def split_for_acm(certificate_pem: bytes, chain_pem: bytes) -> tuple[bytes, bytes]:
    """(leaf, chain) as ImportCertificate wants them: the leaf alone, then its issuers.

    Accepts a full chain in ``certificate_pem`` and a chain that repeats the leaf; keeps
    the order given and drops duplicates.
    """
    from certman.pki import split_pem_chain

    certificates = split_pem_chain(certificate_pem)
    if not certificates:
        raise ValidationError("The certificate is empty; nothing to import into ACM.")
    leaf, chain = certificates[0], []
    for pem in [*certificates[1:], *split_pem_chain(chain_pem)]:
        if pem != leaf and pem not in chain:
            chain.append(pem)
    return leaf, b"".join(chain)


def check_bundle(certificate_pem: bytes, chain_pem: bytes, private_key_pem: bytes) -> None:
    """What ACM refuses (moto does not): a key for another certificate, a broken chain.

    ``certificate_pem`` is the leaf alone and ``chain_pem`` its issuers, leaf first order
    (split_for_acm). Checked before anything is sent, so nothing is imported on a mismatch.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from certman.pki import load_certificate, public_key_der, split_pem_chain

    leaf = load_certificate(certificate_pem)
    try:
        key = load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError):
        raise ValidationError(
            "The private key is not an unencrypted PEM key; not imported."
        ) from None
    if public_key_der(key.public_key()) != public_key_der(leaf.public_key()):
        raise ValidationError("The private key does not belong to the certificate; not imported.")
    child = leaf
    for pem in split_pem_chain(chain_pem):
        parent = load_certificate(pem)
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise ValidationError(
                f"The chain does not link: {child.subject.rfc4514_string()} was not issued by "
                f"{parent.subject.rfc4514_string()} ({type(e).__name__}); not imported."
            ) from None
        child = parent


@dataclass
class AcmDeployer:
    """Deployer on AWS Certificate Manager. The ARN is kept for the certificate's whole life.

    Which ARN a deployment imports to, first match wins: the one this rollout recorded,
    the certificate's ``acm_arn`` when it is in this target's region, a certificate in this
    region tagged ``certman:name`` = NAME (a target in a second region, whose ARN the
    inventory does not keep) or already holding this very revision (an import whose ARN
    was lost to a crash); otherwise a new ARN. A deleted ARN is an error, never silently
    replaced: listeners use it. ACM allows 5,000 imports a year, so a revision ACM already
    holds is not imported again.
    """

    acm: Any
    name: str
    region: str = ""
    target_type: str = "acm"
    # What a deploy changed before it failed half-way (imported, then tagging failed):
    # the rollout only has the state of deploys that returned.
    _partial: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def deploy(self, request: DeployRequest) -> DeployResponse:
        from certman.pki import certificate_facts

        leaf, chain = split_for_acm(request.certificate_pem, request.chain_pem)
        check_bundle(leaf, chain, request.private_key_pem)
        facts = certificate_facts(leaf)
        arn, adopted = self._arn_for(request, facts.serial, leaf)
        if arn and self._describe(arn, request.name).get("serial") == facts.serial:
            self._tag(arn, request.name, request.revision)  # cheap, and heals removed tags
            # An ARN adopted after a crash was created for this revision: a rollback deletes it.
            return DeployResponse(
                changed=False,
                state={"acm_arn": arn, "serial": facts.serial, "created": adopted},
                message=f"{arn} already holds revision {request.revision}.",
            )
        args: dict[str, Any] = {"Certificate": leaf, "PrivateKey": request.private_key_pem}
        if chain:
            args["CertificateChain"] = chain
        if arn:
            args["CertificateArn"] = arn
        else:
            # Tags go with the first import, so a new ARN is never left untagged.
            args["Tags"] = self._tags(request.name, request.revision)
        with aws_call(
            "acm:ImportCertificate",
            arn or f"a new ACM certificate for {request.name}",
            DeployError,
            missing=_deleted_hint(request.name),
        ):
            arn = str(self.acm.import_certificate(**args)["CertificateArn"])
        state = {
            "acm_arn": arn,
            "serial": facts.serial,
            "created": "no" if "CertificateArn" in args else "yes",
        }
        with self._lock:
            self._partial[(request.name, request.revision)] = state
        if "CertificateArn" in args:
            # ACM does not accept tags on a re-import, and re-import drops them in moto:
            # put both back every time.
            self._tag(arn, request.name, request.revision)
        return DeployResponse(changed=True, state=state, message=f"imported to {arn}")

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        """DescribeCertificate shows this revision: its serial and NotAfter, status ISSUED."""
        from certman.pki import certificate_facts

        arn = request.state.get("acm_arn", "")
        if not arn:
            return VerifyResponse(ok=False, message="no ACM ARN was recorded by the deploy.")
        leaf, _ = split_for_acm(request.certificate_pem, b"")
        facts = certificate_facts(leaf)
        seen = self._describe(arn, request.name)
        if seen.get("serial") != facts.serial:
            return VerifyResponse(
                ok=False, message=f"{arn} holds serial {seen.get('serial')}, not {facts.serial}."
            )
        not_after = seen.get("not_after")
        if not_after and not_after != facts.not_after.isoformat():
            return VerifyResponse(
                ok=False, message=f"{arn} reports NotAfter {not_after}, not {facts.not_after}."
            )
        if seen.get("status") not in ("", "ISSUED"):
            return VerifyResponse(ok=False, message=f"{arn} is {seen['status']}, not ISSUED.")
        return VerifyResponse(ok=True, message=f"{arn} holds serial {facts.serial}.")

    def rollback(self, request: RollbackRequest) -> None:
        """Re-import the previous revision to the ARN; delete an ARN this rollout created."""
        state = dict(request.state)
        if not state.get("acm_arn"):
            with self._lock:
                state = self._partial.get((request.name, request.revision), {})
        arn = state.get("acm_arn")
        if not arn:
            return  # nothing reached ACM
        previous = request.previous
        if previous is not None:
            leaf, chain = split_for_acm(previous.certificate_pem, previous.chain_pem)
            from certman.pki import certificate_facts

            if self._describe(arn, request.name).get("serial") != certificate_facts(leaf).serial:
                args: dict[str, Any] = {
                    "CertificateArn": arn,
                    "Certificate": leaf,
                    "PrivateKey": previous.private_key_pem,
                }
                if chain:
                    args["CertificateChain"] = chain
                with aws_call(
                    "acm:ImportCertificate", arn, DeployError, missing=_deleted_hint(request.name)
                ):
                    self.acm.import_certificate(**args)
            self._tag(arn, request.name, previous.revision)
        elif state.get("created") == "yes":
            with aws_call("acm:DeleteCertificate", arn, DeployError, missing="nothing to undo"):
                self.acm.delete_certificate(CertificateArn=arn)

    def forget(self, name: str, revision: int) -> None:
        """The rollout is over (done or rolled back): drop what rollback might have needed."""
        with self._lock:
            self._partial.pop((name, revision), None)

    def plan(self, request: PlanRequest) -> PlanResponse:
        arn = request.acm_arn if request.acm_arn and self._in_region(request.acm_arn) else None
        if not arn:
            return PlanResponse(description="import as a new ACM certificate")
        seen = self._describe(arn, request.name)
        return PlanResponse(
            current_serial=seen.get("serial", ""),
            current_not_after=seen.get("not_after", "").replace("+00:00", "Z"),
            description=f"re-import to {arn}",
        )

    def exists(self, arn: str) -> bool:
        """Whether ACM still has ``arn`` (False when it was deleted outside certman).

        Only this target's region can say an ARN is gone: an ARN of another region (the
        certificate's ``acm_arn`` seen from a second-region target) is not looked up here,
        and is never reported gone; that target finds its own ARN by tag.
        """
        if not self._in_region(arn):
            return True
        from botocore.exceptions import ClientError

        with aws_call("acm:DescribeCertificate", arn, DeployError):
            try:
                self.acm.describe_certificate(CertificateArn=arn)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return False
                raise  # aws_call translates every other failure
        return True

    # --- helpers ------------------------------------------------------------------------

    def _arn_for(self, request: DeployRequest, serial: str, leaf: bytes) -> tuple[str | None, str]:
        """The ARN to import to, and "yes" when it was created for this very revision."""
        recorded = request.previous_state.get("acm_arn")
        if recorded:
            return recorded, request.previous_state.get("created", "no")
        if request.acm_arn and self._in_region(request.acm_arn):
            return request.acm_arn, "no"
        if request.acm_arn:  # a second region: its ARN is found by its tag
            return self._find_tagged(request.name, leaf, serial=None), "no"
        # No ARN at all: adopt only a certificate holding this very revision (an import
        # whose ARN a crash lost before it was recorded).
        found = self._find_tagged(request.name, leaf, serial=serial)
        return found, "yes" if found else "no"

    def _in_region(self, arn: str) -> bool:
        return not self.region or region_of(arn) == self.region

    def _find_tagged(self, name: str, leaf: bytes, *, serial: str | None) -> str | None:
        names = _names_of(leaf)
        with aws_call("acm:ListCertificates", self.region or "the region", DeployError):
            pages = self.acm.get_paginator("list_certificates").paginate(
                Includes={"keyTypes": KEY_TYPES}
            )
            candidates = [
                s["CertificateArn"]
                for page in pages
                for s in page.get("CertificateSummaryList", [])
                if s.get("DomainName") in names and s.get("Type", "IMPORTED") == "IMPORTED"
            ]
        for arn in candidates:
            with aws_call("acm:ListTagsForCertificate", arn, DeployError):
                tags = self.acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
            if {t["Key"]: t.get("Value") for t in tags}.get(TAG_NAME) != name:
                continue
            if serial is None or self._describe(arn, name).get("serial") == serial:
                return str(arn)
        return None

    def _describe(self, arn: str, name: str) -> dict[str, str]:
        with aws_call("acm:DescribeCertificate", arn, DeployError, missing=_deleted_hint(name)):
            cert = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
        not_after = cert.get("NotAfter")
        return {
            "serial": acm_serial(str(cert.get("Serial", ""))),
            "not_after": _utc_iso(not_after) if isinstance(not_after, datetime) else "",
            "status": str(cert.get("Status", "")),
        }

    def _tags(self, name: str, revision: int) -> list[dict[str, str]]:
        return [{"Key": TAG_NAME, "Value": name}, {"Key": TAG_REVISION, "Value": str(revision)}]

    def _tag(self, arn: str, name: str, revision: int) -> None:
        with aws_call("acm:AddTagsToCertificate", arn, DeployError, missing=_deleted_hint(name)):
            self.acm.add_tags_to_certificate(CertificateArn=arn, Tags=self._tags(name, revision))


def _names_of(leaf: bytes) -> set[str]:
    """The names ACM may list a certificate under (its DomainName: CN or first SAN)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from certman.pki import load_certificate

    certificate = load_certificate(leaf)
    names = {str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    names |= {str(v) for v in san.get_values_for_type(x509.DNSName)}
    names |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return names


def _utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def _deleted_hint(name: str) -> str:
    return (
        "it was deleted outside certman. Run `certman acm import "
        f"{name}` to import the certificate under a new ARN, then point its users at it"
    )


def build_deployer(runtime: Runtime, settings: Mapping[str, Any]) -> AcmDeployer:
    where = f"[targets.{settings['name']}] of {runtime.config.path}"
    unknown = sorted(set(settings) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"Unknown key {unknown[0]!r} in {where}; an acm target takes: region.")
    region = str(settings.get("region") or "") or runtime.aws.region
    if not valid_region(region):
        raise ConfigError(
            f"targets.{settings['name']}.region = {region!r} in {runtime.config.path} is not an "
            'AWS region name; use one such as "us-west-2".'
        )
    return AcmDeployer(
        acm=runtime.aws.client("acm", region), name=str(settings["name"]), region=region
    )
