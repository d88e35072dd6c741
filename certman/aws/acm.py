"""The `acm` target: import on first deployment; on renewal re-import to the same ARN, or
(``acm_strategy = "new-arn"``) import under a new ARN the listeners move to wave by wave."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from certman.aws.acm_certs import (
    TAG_NAME,
    TAG_REVISION,
    acm_serial,
    check_bundle,
    key_types_of,
    names_of,
    split_for_acm,
)
from certman.aws.clients import region_of
from certman.aws.errors import Hints, aws_call
from certman.contracts.deployer import (
    CleanupRequest,
    DeployRequest,
    DeployResponse,
    PlanRequest,
    PlanResponse,
    RollbackRequest,
    VerifyRequest,
    VerifyResponse,
)
from certman.deploy.settings import check_keys
from certman.errors import ConfigError, DeployError

if TYPE_CHECKING:
    from certman.contracts.build_context import BuildContext

KNOWN_KEYS = {"type", "name", "region", "acm_strategy"}
# acm_strategy: how a renewal reaches ACM. "reimport" (ACM's convention, the default): to the
# same ARN, so every listener naming it switches at once. "new-arn": under a new ARN, which
# the rollout's listeners move to wave by wave; the replaced ARN is deleted afterwards.
REIMPORT = "reimport"
NEW_ARN = "new-arn"
STRATEGIES = (REIMPORT, NEW_ARN)


@dataclass(frozen=True, kw_only=True)
class _Destination:
    """Where a deployment imports: ``arn`` (None: a new ARN), whether that ARN was created for
    this very revision, and (new-arn) the ARN it replaces."""

    arn: str | None
    created: str = "no"
    replaces: str = ""


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
    strategy: str = REIMPORT
    # The region's ELBv2 client (new-arn): a replaced ARN is deleted only once no listener
    # names it, and the new one on a rollback only if none does.
    elb: Any = None
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
        if self.strategy == NEW_ARN:
            where = self._new_arn_for(request, facts.serial, leaf)
        else:
            arn, adopted = self._arn_for(request, facts.serial, leaf)
            where = _Destination(arn=arn, created=adopted)
        arn = where.arn
        new_arn = self.strategy == NEW_ARN
        marks = {"strategy": NEW_ARN, "replaces": where.replaces} if new_arn else {}
        if arn and self._describe(arn, request.name).get("serial") == facts.serial:
            self._tag(arn, request.name, request.revision)  # cheap, and heals removed tags
            # An ARN adopted after a crash was created for this revision: a rollback deletes it.
            return DeployResponse(
                changed=False,
                state={"acm_arn": arn, "serial": facts.serial, "created": where.created, **marks},
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
            _deleted(request.name),
        ):
            arn = str(self.acm.import_certificate(**args)["CertificateArn"])
        state = {
            "acm_arn": arn,
            "serial": facts.serial,
            "created": "no" if "CertificateArn" in args else "yes",
            **marks,
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
        if state.get("strategy") == NEW_ARN:
            self._roll_back_new_arn(arn, state)
            return
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
                with aws_call("acm:ImportCertificate", arn, DeployError, _deleted(request.name)):
                    self.acm.import_certificate(**args)
            self._tag(arn, request.name, previous.revision)
        elif state.get("created") == "yes":
            with aws_call("acm:DeleteCertificate", arn, DeployError, _NOTHING_TO_UNDO):
                self.acm.delete_certificate(CertificateArn=arn)

    def _roll_back_new_arn(self, arn: str, state: Mapping[str, str]) -> None:
        """The replaced ARN was never touched, and the listeners went back to it before this
        (rollbacks run in reverse): delete the ARN made for this revision, so that a retry
        imports anew and no ARN is left behind. One a listener still names is kept (its
        rollback failed) and the rollback reported incomplete; a retry of the same revision
        adopts it by its tag and serial instead of importing again."""
        if state.get("created") != "yes" or arn == state.get("replaces"):
            return  # the ARN held this revision before the rollout: nothing was changed
        users = self._users(arn)
        if users:
            raise DeployError(
                f"{arn} (imported for this rollout) was kept: still used by {', '.join(users)}."
            )
        with aws_call("acm:DeleteCertificate", arn, DeployError, _NOTHING_TO_UNDO):
            self.acm.delete_certificate(CertificateArn=arn)

    def clean_up(self, request: CleanupRequest) -> str:
        """new-arn, once every unit verified: delete the replaced ARN when nothing uses it.

        Listeners are asked (DescribeListeners, DescribeListenerCertificates) rather than
        InUseBy; a user InUseBy names outside ELB (CloudFront, API Gateway) keeps it too.
        """
        old, new = request.state.get("replaces", ""), request.state.get("acm_arn", "")
        if request.state.get("strategy") != NEW_ARN or not old or old == new:
            return ""
        if not self._in_region(old) or not self.exists(old):
            return ""  # gone already (an earlier run of this clean-up deleted it)
        users = self._users(old)
        if users:
            return f"kept the replaced {old}: still used by {', '.join(users)}"
        with aws_call("acm:DeleteCertificate", old, DeployError, _NOTHING_TO_UNDO):
            self.acm.delete_certificate(CertificateArn=old)
        return f"deleted the replaced {old} (no listener uses it)"

    def _users(self, arn: str) -> list[str]:
        """Listeners naming ``arn`` now, and InUseBy entries outside Elastic Load Balancing."""
        from certman.aws.elb_usage import listeners_using

        with aws_call("acm:DescribeCertificate", arn, DeployError, _NOTHING_TO_UNDO):
            in_use = self.acm.describe_certificate(CertificateArn=arn)["Certificate"].get(
                "InUseBy", []
            )
        others = [str(u) for u in in_use if ":elasticloadbalancing:" not in str(u)]
        listeners = listeners_using(self.elb, arn) if self.elb is not None else []
        return listeners + others

    def forget(self, name: str, revision: int) -> None:
        """The rollout is over (done or rolled back): drop what rollback might have needed."""
        with self._lock:
            self._partial.pop((name, revision), None)

    def plan(self, request: PlanRequest) -> PlanResponse:
        arn = request.acm_arn if request.acm_arn and self._in_region(request.acm_arn) else None
        if not arn:
            return PlanResponse(description="import as a new ACM certificate")
        seen = self._describe(arn, request.name)
        description = (
            f"import under a new ARN; {arn} is deleted once no listener uses it"
            if self.strategy == NEW_ARN
            else f"re-import to {arn}"
        )
        return PlanResponse(
            current_serial=seen.get("serial", ""),
            current_not_after=seen.get("not_after", "").replace("+00:00", "Z"),
            description=description,
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

    def _new_arn_for(self, request: DeployRequest, serial: str, leaf: bytes) -> _Destination:
        """new-arn: the ARN this rollout recorded; the region's ARN when it holds this very
        revision already; an ARN imported for this revision whose record a crash lost (found
        by tag and serial); otherwise a new ARN, replacing the region's current one."""
        recorded = request.previous_state.get("acm_arn")
        if recorded:
            return _Destination(
                arn=recorded,
                created=request.previous_state.get("created", "no"),
                replaces=request.previous_state.get("replaces", ""),
            )
        if request.acm_arn and self._in_region(request.acm_arn):
            current: str | None = request.acm_arn
        elif request.acm_arn:  # a second region: its ARN is found by its tag
            current = self._find_tagged(request.name, leaf, serial=None)
        else:
            current = None
        if current and self._serial_at(current, request.name) == serial:
            return _Destination(arn=current)
        adopted = self._find_tagged(request.name, leaf, serial=serial)
        if adopted:
            return _Destination(arn=adopted, created="yes", replaces=current or "")
        return _Destination(arn=None, replaces=current or "")

    def _serial_at(self, arn: str, name: str) -> str | None:
        """The serial ACM holds under ``arn``; None when it was deleted (new-arn imports anew
        anyway, so a deleted ARN is not an error there)."""
        if not self.exists(arn):
            return None
        return self._describe(arn, name).get("serial")

    def _in_region(self, arn: str) -> bool:
        return not self.region or region_of(arn) == self.region

    def _find_tagged(self, name: str, leaf: bytes, *, serial: str | None) -> str | None:
        """The first imported certificate of this region tagged ``certman:name`` = NAME under
        one of the leaf's names and with its key type (and holding ``serial``, if given).

        ListCertificates is asked for the leaf's key type only, and the search stops at the
        first match: tags and serials are one call per candidate.
        """
        names = names_of(leaf)
        with aws_call("acm:ListCertificates", self.region or "the region", DeployError):
            pages = self.acm.get_paginator("list_certificates").paginate(
                Includes={"keyTypes": key_types_of(leaf)}
            )
            for page in pages:
                for summary in page.get("CertificateSummaryList", []):
                    if summary.get("DomainName") not in names:
                        continue
                    if summary.get("Type", "IMPORTED") != "IMPORTED":
                        continue
                    arn = str(summary["CertificateArn"])
                    if self._tagged_as(arn, name) and (
                        serial is None or self._describe(arn, name).get("serial") == serial
                    ):
                        return arn
        return None

    def _tagged_as(self, arn: str, name: str) -> bool:
        with aws_call("acm:ListTagsForCertificate", arn, DeployError):
            tags = self.acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
        return {t["Key"]: t.get("Value") for t in tags}.get(TAG_NAME) == name

    def _describe(self, arn: str, name: str) -> dict[str, str]:
        with aws_call("acm:DescribeCertificate", arn, DeployError, _deleted(name)):
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
        with aws_call("acm:AddTagsToCertificate", arn, DeployError, _deleted(name)):
            self.acm.add_tags_to_certificate(CertificateArn=arn, Tags=self._tags(name, revision))


def _utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def _deleted(name: str) -> Hints:
    return Hints(
        missing="it was deleted outside certman. Run `certman acm import "
        f"{name}` to import the certificate under a new ARN, then point its users at it"
    )


_NOTHING_TO_UNDO = Hints(missing="nothing to undo")


def build_deployer(context: BuildContext, settings: Mapping[str, Any]) -> AcmDeployer:
    where = f"[targets.{settings['name']}] of {context.config_path}"
    check_keys(settings, KNOWN_KEYS, where, "an acm target")
    strategy = settings.get("acm_strategy", REIMPORT)
    if strategy not in STRATEGIES:
        raise ConfigError(
            f'acm_strategy = {strategy!r} in {where}; use "reimport" (the default: renewals go '
            'to the same ARN) or "new-arn" (listeners move to a new ARN wave by wave).'
        )
    aws = context.aws()
    region = str(settings.get("region") or "") or aws.region
    acm = aws.client("acm", region, setting=f"targets.{settings['name']}.region")
    elb = aws.client("elbv2", region) if strategy == NEW_ARN else None
    return AcmDeployer(
        acm=acm, name=str(settings["name"]), region=region, strategy=str(strategy), elb=elb
    )
