"""The `acm` target: import on first deployment, re-import to the same ARN on every renewal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


def check_bundle(certificate_pem: bytes, chain_pem: bytes, private_key_pem: bytes) -> None:
    """What ACM refuses (moto does not): a key for another certificate, a broken chain."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from certman.pki import load_certificate, public_key_der, split_pem_chain

    leaf = load_certificate(certificate_pem)
    key = load_pem_private_key(private_key_pem, password=None)
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
    """Deployer on AWS Certificate Manager. The ARN is kept for the certificate's whole life."""

    acm: Any
    name: str
    target_type: str = "acm"

    def deploy(self, request: DeployRequest) -> DeployResponse:
        check_bundle(request.certificate_pem, request.chain_pem, request.private_key_pem)
        from certman.pki import certificate_facts

        serial = certificate_facts(request.certificate_pem).serial
        arn = request.previous_state.get("acm_arn") or request.acm_arn
        if arn and self._serial_at(arn) == serial:
            # ACM allows 5,000 imports a year: this revision is there already.
            return DeployResponse(changed=False, state={"acm_arn": arn, "serial": serial})
        args: dict[str, Any] = {
            "Certificate": request.certificate_pem,
            "PrivateKey": request.private_key_pem,
        }
        if request.chain_pem.strip():
            args["CertificateChain"] = request.chain_pem
        if arn:
            args["CertificateArn"] = arn
        with aws_call(
            "acm:ImportCertificate", arn or f"a new certificate for {request.name}", DeployError
        ):
            arn = self.acm.import_certificate(**args)["CertificateArn"]
        created = "CertificateArn" not in args
        # Re-import drops tags in some implementations: (re-)apply them every time.
        with aws_call("acm:AddTagsToCertificate", arn, DeployError):
            self.acm.add_tags_to_certificate(
                CertificateArn=arn,
                Tags=[
                    {"Key": "certman:name", "Value": request.name},
                    {"Key": "certman:revision", "Value": str(request.revision)},
                ],
            )
        state = {"acm_arn": arn, "serial": serial, "created": "yes" if created else "no"}
        return DeployResponse(changed=True, state=state)

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        from certman.pki import certificate_facts

        arn = request.state.get("acm_arn", "")
        expected = certificate_facts(request.certificate_pem).serial
        seen = self._serial_at(arn)
        if seen == expected:
            return VerifyResponse(ok=True, message=f"{arn} holds serial {expected}.")
        return VerifyResponse(ok=False, message=f"{arn} holds serial {seen}, not {expected}.")

    def rollback(self, request: RollbackRequest) -> None:
        arn = request.state.get("acm_arn")
        if not arn:
            return
        previous = request.previous
        if previous is not None:
            with aws_call("acm:ImportCertificate", arn, DeployError):
                self.acm.import_certificate(
                    CertificateArn=arn,
                    Certificate=previous.certificate_pem,
                    PrivateKey=previous.private_key_pem,
                    **(
                        {"CertificateChain": previous.chain_pem}
                        if previous.chain_pem.strip()
                        else {}
                    ),
                )
            with aws_call("acm:AddTagsToCertificate", arn, DeployError):
                self.acm.add_tags_to_certificate(
                    CertificateArn=arn,
                    Tags=[
                        {"Key": "certman:name", "Value": request.name},
                        {"Key": "certman:revision", "Value": str(previous.revision)},
                    ],
                )
        elif request.state.get("created") == "yes":
            with aws_call("acm:DeleteCertificate", arn, DeployError):
                self.acm.delete_certificate(CertificateArn=arn)

    def plan(self, request: PlanRequest) -> PlanResponse:
        if not request.acm_arn:
            return PlanResponse(description="import as a new ACM certificate")
        with aws_call("acm:DescribeCertificate", request.acm_arn, DeployError):
            cert = self.acm.describe_certificate(CertificateArn=request.acm_arn)["Certificate"]
        not_after = cert.get("NotAfter")
        return PlanResponse(
            current_serial=acm_serial(str(cert.get("Serial", ""))),
            current_not_after=not_after.isoformat().replace("+00:00", "Z") if not_after else "",
            description=f"re-import to {request.acm_arn}",
        )

    def _serial_at(self, arn: str) -> str:
        with aws_call("acm:DescribeCertificate", arn, DeployError):
            cert = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
        return acm_serial(str(cert.get("Serial", "")))


def build_deployer(runtime: Runtime, settings: Mapping[str, Any]) -> AcmDeployer:
    where = f"[targets.{settings['name']}] of {runtime.config.path}"
    unknown = sorted(set(settings) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"Unknown key {unknown[0]!r} in {where}; an acm target takes: region.")
    region = str(settings.get("region") or "") or None
    return AcmDeployer(acm=runtime.aws.client("acm", region), name=str(settings["name"]))
