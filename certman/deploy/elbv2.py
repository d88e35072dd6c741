"""The `elbv2` target: the certificate's ACM ARN on load balancer listeners (SNI or default)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certman.aws.errors import aws_call
from certman.contracts.deployer import (
    CleanupRequest,
    DeployRequest,
    DeployResponse,
    PlanRequest,
    PlanResponse,
    RollbackRequest,
    RolloutPrecheckRequest,
    SupportsPlan,
    VerifyRequest,
    VerifyResponse,
)
from certman.deploy.probe import Probe
from certman.deploy.settings import boolean, check_keys, whole_number
from certman.errors import ConfigError, DeployError, ValidationError

if TYPE_CHECKING:
    from certman.contracts.build_context import BuildContext

KNOWN_KEYS = {
    "type",
    "name",
    "listener_arns",
    "role",
    "probe",
    "probe_timeout",
    "probe_settle",
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
    TLS handshakes must settle on the new serial. With ``remove_old``, once the whole
    rollout verified, an ARN the listener got from an earlier rollout of this certificate
    is dropped from its SNI list when it differs from the new one (renewals re-import to
    the same ARN, so this happens only when the ARN itself changed).
    """

    elb: Any
    name: str
    listener_arns: list[str]
    region: str = ""
    role: str = "sni"
    probe: Probe | None = None
    wave_size: int = 1
    remove_old: bool = True
    quota: int = DEFAULT_QUOTA
    # Reads what an ARN holds (serial, NotAfter) for `deploy plan`: an ACM client's plan.
    acm: SupportsPlan | None = None
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

    def _sni_used(self, lb_arn: str) -> int:
        """SNI certificates on all the load balancer's listeners (what the quota counts)."""
        with aws_call("elasticloadbalancing:DescribeListeners", lb_arn, DeployError):
            listeners = self.elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
        return sum(len(self._sni_arns(item["ListenerArn"])) for item in listeners)

    def _check_quota(self, lb_arn: str, adding: int) -> None:
        used = self._sni_used(lb_arn)
        if used + adding > self.quota:
            raise ValidationError(
                f"Load balancer {lb_arn} holds {used} SNI certificates and this rollout would "
                f"add {adding}, over its quota of {self.quota}; remove unused ones or ask AWS "
                f"to raise the quota (then set certificate_quota in [targets.{self.name}])."
            )

    def precheck_rollout(self, request: RolloutPrecheckRequest) -> None:
        """Everything that would make a rollout fail half-way, checked before it starts."""
        arn = request.acm_arn
        if not arn and not request.acm_in_rollout:
            raise ValidationError(
                f"Target {self.name!r} puts the certificate's ACM ARN on listeners, but no "
                f"acm target in {self.region} deploys it; bind an acm target of that region "
                "too (it deploys first)."
            )
        if self.role == "sni":
            # Per load balancer: every listener still missing the ARN adds one certificate.
            adding: dict[str, int] = {}
            for listener in self.listener_arns:
                if not arn or arn not in self._sni_arns(listener):
                    lb_arn = str(self._listener(listener)["LoadBalancerArn"])
                    adding[lb_arn] = adding.get(lb_arn, 0) + 1
            for lb_arn, count in adding.items():
                self._check_quota(lb_arn, count)
        if request.probe and self.probe is not None:
            self.probe.require_answer(request.server_name)

    # --- Deployer ---------------------------------------------------------------------

    def deploy(self, request: DeployRequest) -> DeployResponse:
        arn = request.acm_arn
        if not arn:
            raise ValidationError(
                f"Target {self.name!r} needs the certificate's ACM ARN in {self.region}: bind "
                "an acm target of that region too (it deploys first)."
            )
        listener = request.unit
        if self.role == "sni":
            return self._deploy_sni(listener, arn, request)
        previous_default = self._default_arn(listener)
        if previous_default == arn:
            return DeployResponse(
                changed=False, state=_kept(request, {"listener": listener, "acm_arn": arn})
            )
        sni = self._sni_arns(listener)
        self._set_default(listener, arn, keep_sni=sni)
        return DeployResponse(
            changed=True,
            state={"listener": listener, "acm_arn": arn, "previous_default": previous_default},
        )

    def _deploy_sni(self, listener: str, arn: str, request: DeployRequest) -> DeployResponse:
        """Add ``arn`` to the SNI list; with acm_strategy "new-arn", then take the replaced
        ARN out, so this listener (and only it) has moved: the new one goes in first, so the
        listener is never without a certificate for the name."""
        old = request.replaces_acm_arn if request.replaces_acm_arn != arn else None
        held = self._sni_arns(listener)
        state = _kept(request, {"listener": listener, "acm_arn": arn})
        if arn in held and (not old or old not in held):
            return DeployResponse(changed=False, state=state)
        if arn not in held:
            self._check_quota(str(self._listener(listener)["LoadBalancerArn"]), 1)
            with aws_call("elasticloadbalancing:AddListenerCertificates", listener, DeployError):
                self.elb.add_listener_certificates(
                    ListenerArn=listener, Certificates=[{"CertificateArn": arn}]
                )
            state["added"] = "yes"
        if old and old in held:
            with aws_call("elasticloadbalancing:RemoveListenerCertificates", listener, DeployError):
                self.elb.remove_listener_certificates(
                    ListenerArn=listener, Certificates=[{"CertificateArn": old}]
                )
            state["removed"] = old
        return DeployResponse(changed=True, state=state)

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
        replaced = request.state.get("removed", "")
        if replaced and replaced in held:
            return VerifyResponse(
                ok=False, message=f"listener {listener} still holds the replaced {replaced}."
            )
        if self.probe is not None:
            ok, seen = self.probe.sees(request.certificate_pem)
            if not ok:
                return VerifyResponse(ok=False, message=seen + ".")
        return VerifyResponse(ok=True, message=f"listener {listener} serves {arn}.")

    def rollback(self, request: RollbackRequest) -> None:
        listener = request.unit
        state = request.state
        replaced = state.get("removed", "")
        # new-arn: the replaced ARN goes back in before the new one comes out.
        if self.role == "sni" and replaced and replaced not in self._sni_arns(listener):
            with aws_call("elasticloadbalancing:AddListenerCertificates", listener, DeployError):
                self.elb.add_listener_certificates(
                    ListenerArn=listener, Certificates=[{"CertificateArn": replaced}]
                )
        if self.role == "sni" and state.get("added") == "yes":
            if state["acm_arn"] not in self._sni_arns(listener):
                return  # already removed: rollback is idempotent
            with aws_call("elasticloadbalancing:RemoveListenerCertificates", listener, DeployError):
                self.elb.remove_listener_certificates(
                    ListenerArn=listener, Certificates=[{"CertificateArn": state["acm_arn"]}]
                )
        elif self.role == "default" and state.get("previous_default"):
            self._set_default(
                listener, state["previous_default"], keep_sni=self._sni_arns(listener)
            )

    def clean_up(self, request: CleanupRequest) -> str:
        """``remove_old``: drop the ARN an earlier rollout put in this listener's SNI list."""
        old, new = request.earlier.get("acm_arn", ""), request.state.get("acm_arn", "")
        if not self.remove_old or self.role != "sni" or not old or old == new:
            return ""
        listener = request.unit
        if old not in self._sni_arns(listener):
            return ""
        with aws_call("elasticloadbalancing:RemoveListenerCertificates", listener, DeployError):
            self.elb.remove_listener_certificates(
                ListenerArn=listener, Certificates=[{"CertificateArn": old}]
            )
        return f"removed the replaced {old} from the SNI list of {listener}"

    def plan(self, request: PlanRequest) -> PlanResponse:
        listener = request.unit
        new_arn = request.acm_strategy == "new-arn"
        if self.role == "sni":
            present = bool(request.acm_arn) and request.acm_arn in self._sni_arns(listener)
            held = request.acm_arn if present else None
            if new_arn:
                what = f"swap {held} for the new ARN in" if present else "add the new ARN to"
                description = f"{what} the SNI list of {listener}"
            else:
                what = "already in the SNI list" if present else "add to the SNI list"
                description = f"{what} of {listener}"
        elif new_arn:
            held = self._default_arn(listener) or None
            description = (
                f"make the new ARN the default certificate of {listener} (now {held or 'none'})"
            )
        else:
            held = self._default_arn(listener) or None
            description = f"make the default certificate of {listener} (now {held or 'none'})"
        current = self._describe(held, request) if held else PlanResponse()
        return PlanResponse(
            current_serial=current.current_serial,
            current_not_after=current.current_not_after,
            description=description,
        )

    def _describe(self, arn: str, request: PlanRequest) -> PlanResponse:
        """What ACM holds under ``arn`` (its serial and NotAfter); empty when ACM cannot say."""
        if self.acm is None:
            return PlanResponse()
        try:
            return self.acm.plan(
                PlanRequest(name=request.name, certificate_pem=request.certificate_pem, acm_arn=arn)
            )
        except DeployError:
            return PlanResponse()  # deleted, or in another account: the plan shows "nothing"


def _kept(request: DeployRequest, state: dict[str, str]) -> dict[str, str]:
    """A listener an interrupted attempt already switched keeps what its rollback needs."""
    prior = request.previous_state
    if prior.get("acm_arn") == state["acm_arn"] and prior.get("listener") == state["listener"]:
        for key in ("added", "removed", "previous_default"):
            if prior.get(key):
                state[key] = prior[key]
    return state


def build_deployer(context: BuildContext, settings: Mapping[str, Any]) -> Elbv2Deployer:
    from certman.aws.acm import AcmDeployer

    where = f"[targets.{settings['name']}] of {context.config_path}"
    check_keys(settings, KNOWN_KEYS, where, "an elbv2 target")
    arns = settings.get("listener_arns")
    if not isinstance(arns, list) or not arns or not all(isinstance(a, str) for a in arns):
        raise ConfigError(f"listener_arns in {where} must be a non-empty list of listener ARNs.")
    role = str(settings.get("role", "sni"))
    if role not in ("sni", "default"):
        raise ConfigError(f'role = {role!r} in {where}; use "sni" or "default".')
    aws = context.aws()
    region = str(settings.get("region") or "") or aws.region
    deployer = Elbv2Deployer(
        elb=aws.client("elbv2", region, setting=f"targets.{settings['name']}.region"),
        name=str(settings["name"]),
        listener_arns=list(arns),
        region=region,
        role=role,
        probe=Probe.from_settings(settings, where, default_timeout="30s"),
        wave_size=whole_number(settings, "wave_size", 1, where),
        remove_old=boolean(settings, "remove_old", True, where),
        quota=whole_number(settings, "certificate_quota", DEFAULT_QUOTA, where),
        acm=AcmDeployer(acm=aws.client("acm", region), name=str(settings["name"]), region=region),
    )
    for arn in deployer.listener_arns:  # a listener that does not exist is refused up front
        try:
            deployer._listener(arn)
        except DeployError as e:
            raise ConfigError(f"{e.message} (listener_arns in {where})") from None
    return deployer
