"""The `elbv2` target: the certificate's ACM ARN on load balancer listeners (SNI or default)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certman.aws.errors import aws_call
from certman.deploy.probe import Endpoint, wait_for_serial
from certman.durations import parse_duration
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

KNOWN_KEYS = {
    "type",
    "name",
    "listener_arns",
    "role",
    "probe",
    "probe_timeout",
    "wave_size",
    "remove_old",
    "region",
    "certificate_quota",
}
# Elastic Load Balancing quota "certificates per Application Load Balancer" (default
# certificates excluded): 25 unless raised with AWS.
DEFAULT_QUOTA = 25


@dataclass
class Elbv2Deployer:
    """Adds the ARN to each listener's SNI list, or makes it the listener's default.

    Verification asks the listener itself (ACM InUseBy is not trusted) and, with a probe,
    a TLS handshake must see the new serial. ``remove_old`` would drop a replaced ARN from
    the SNI list; renewals re-import to the same ARN, so there is none to drop today.
    """

    elb: Any
    name: str
    listener_arns: list[str]
    role: str = "sni"
    probe: Endpoint | None = None
    probe_timeout: float = 30.0
    remove_old: bool = True
    quota: int = DEFAULT_QUOTA
    target_type: str = "elbv2"

    def units(self) -> list[str]:
        return list(self.listener_arns)

    # --- what a listener holds ----------------------------------------------------------

    def _listener(self, arn: str) -> dict[str, Any]:
        with aws_call("elasticloadbalancing:DescribeListeners", arn, DeployError):
            listeners = self.elb.describe_listeners(ListenerArns=[arn])["Listeners"]
        return dict(listeners[0])

    def _default_arn(self, listener_arn: str) -> str:
        certs = self._listener(listener_arn).get("Certificates") or []
        return str(certs[0]["CertificateArn"]) if certs else ""

    def _sni_arns(self, listener_arn: str) -> list[str]:
        with aws_call(
            "elasticloadbalancing:DescribeListenerCertificates", listener_arn, DeployError
        ):
            pages = self.elb.describe_listener_certificates(ListenerArn=listener_arn)
        return [
            c["CertificateArn"] for c in pages.get("Certificates", []) if not c.get("IsDefault")
        ]

    def _check_quota(self, listener_arn: str) -> None:
        """Refuse before adding anything when the load balancer is at its certificate quota."""
        lb_arn = self._listener(listener_arn)["LoadBalancerArn"]
        with aws_call("elasticloadbalancing:DescribeListeners", lb_arn, DeployError):
            listeners = self.elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
        used = sum(len(self._sni_arns(item["ListenerArn"])) for item in listeners)
        if used >= self.quota:
            raise ValidationError(
                f"Load balancer {lb_arn} already holds {used} SNI certificates, its quota of "
                f"{self.quota}; remove unused ones or ask AWS to raise the quota (then set "
                f"certificate_quota in [targets.{self.name}])."
            )

    def precheck(self, acm_arn: str | None) -> None:
        """Everything that would make a rollout fail half-way, checked before it starts."""
        if self.role != "sni":
            return
        for listener in self.listener_arns:
            if not acm_arn or acm_arn not in self._sni_arns(listener):
                self._check_quota(listener)

    # --- Deployer ---------------------------------------------------------------------

    def deploy(self, request: DeployRequest) -> DeployResponse:
        arn = request.acm_arn
        if not arn:
            raise ValidationError(
                f"Target {self.name!r} needs the certificate's ACM ARN: bind an acm target "
                "too (it deploys first)."
            )
        listener = request.unit
        if self.role == "sni":
            if arn in self._sni_arns(listener):
                return DeployResponse(changed=False, state={"listener": listener, "acm_arn": arn})
            self._check_quota(listener)
            with aws_call("elasticloadbalancing:AddListenerCertificates", listener, DeployError):
                self.elb.add_listener_certificates(
                    ListenerArn=listener, Certificates=[{"CertificateArn": arn}]
                )
            return DeployResponse(
                changed=True, state={"listener": listener, "acm_arn": arn, "added": "yes"}
            )
        previous_default = self._default_arn(listener)
        if previous_default == arn:
            return DeployResponse(changed=False, state={"listener": listener, "acm_arn": arn})
        sni = self._sni_arns(listener)
        self._set_default(listener, arn, keep_sni=sni)
        return DeployResponse(
            changed=True,
            state={"listener": listener, "acm_arn": arn, "previous_default": previous_default},
        )

    def _set_default(self, listener: str, arn: str, *, keep_sni: list[str]) -> None:
        with aws_call("elasticloadbalancing:ModifyListener", listener, DeployError):
            self.elb.modify_listener(ListenerArn=listener, Certificates=[{"CertificateArn": arn}])
        # Keep the SNI list as it was (some implementations reset it with the default).
        missing = [a for a in keep_sni if a not in self._sni_arns(listener) and a != arn]
        if missing:
            with aws_call("elasticloadbalancing:AddListenerCertificates", listener, DeployError):
                self.elb.add_listener_certificates(
                    ListenerArn=listener, Certificates=[{"CertificateArn": a} for a in missing]
                )

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        listener = request.unit
        arn = request.state.get("acm_arn", "")
        held = self._sni_arns(listener) if self.role == "sni" else [self._default_arn(listener)]
        if arn not in held:
            return VerifyResponse(ok=False, message=f"listener {listener} does not report {arn}.")
        if self.probe is not None:
            from certman.pki import certificate_facts, load_certificate

            serial = certificate_facts(request.certificate_pem).serial
            names = _dns_names(load_certificate(request.certificate_pem))
            ok, seen = wait_for_serial(
                self.probe, names[0] if names else None, serial, timeout=self.probe_timeout
            )
            if not ok:
                return VerifyResponse(
                    ok=False,
                    message=f"{self.probe} shows {seen} after {self.probe_timeout:.0f}s, not "
                    f"the new serial {serial}.",
                )
        return VerifyResponse(ok=True, message=f"listener {listener} serves {arn}.")

    def rollback(self, request: RollbackRequest) -> None:
        listener = request.unit
        state = request.state
        if self.role == "sni" and state.get("added") == "yes":
            with aws_call("elasticloadbalancing:RemoveListenerCertificates", listener, DeployError):
                self.elb.remove_listener_certificates(
                    ListenerArn=listener, Certificates=[{"CertificateArn": state["acm_arn"]}]
                )
        elif self.role == "default" and state.get("previous_default"):
            self._set_default(
                listener, state["previous_default"], keep_sni=self._sni_arns(listener)
            )

    def plan(self, request: PlanRequest) -> PlanResponse:
        listener = request.unit
        if self.role == "sni":
            present = request.acm_arn in self._sni_arns(listener) if request.acm_arn else False
            what = "already in the SNI list" if present else "add to the SNI list"
            return PlanResponse(description=f"{what} of {listener}")
        return PlanResponse(
            description=f"make the default certificate of {listener} "
            f"(now {self._default_arn(listener) or 'none'})"
        )


def _dns_names(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n.removeprefix("*.") for n in san.get_values_for_type(x509.DNSName)]


def build_deployer(runtime: Runtime, settings: Mapping[str, Any]) -> Elbv2Deployer:
    where = f"[targets.{settings['name']}] of {runtime.config.path}"
    unknown = sorted(set(settings) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"Unknown key {unknown[0]!r} in {where}; an elbv2 target takes: "
            f"{', '.join(sorted(KNOWN_KEYS - {'type', 'name'}))}."
        )
    arns = settings.get("listener_arns")
    if not isinstance(arns, list) or not arns or not all(isinstance(a, str) for a in arns):
        raise ConfigError(f"listener_arns in {where} must be a non-empty list of listener ARNs.")
    role = str(settings.get("role", "sni"))
    if role not in ("sni", "default"):
        raise ConfigError(f'role = {role!r} in {where}; use "sni" or "default".')
    try:
        timeout = parse_duration(str(settings.get("probe_timeout", "30s")), field="probe_timeout")
    except ValidationError as e:
        raise ConfigError(f"{e} (in {where})") from None
    deployer = Elbv2Deployer(
        elb=runtime.aws.client("elbv2", str(settings.get("region") or "") or None),
        name=str(settings["name"]),
        listener_arns=list(arns),
        role=role,
        probe=Endpoint.parse(str(settings["probe"]), where=where)
        if settings.get("probe")
        else None,
        probe_timeout=timeout.total_seconds(),
        remove_old=bool(settings.get("remove_old", True)),
        quota=int(settings.get("certificate_quota", DEFAULT_QUOTA)),
    )
    for arn in deployer.listener_arns:  # a listener that does not exist is refused up front
        try:
            deployer._listener(arn)
        except DeployError as e:
            raise ConfigError(f"{e.message} (listener_arns in {where})") from None
    return deployer
