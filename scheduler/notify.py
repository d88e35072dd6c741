"""Notifications: recorded in the outbox first, then a webhook JSON POST and/or an SNS publish."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from certman.scheduler import outbox

from certman.errors import CertmanError
from certman.redact import redact_webhook_url, scrub
from certman.service.runtime import Runtime

log = logging.getLogger("certman.notify")

WEBHOOK, SNS = "webhook", "sns"
BATCH = 100


@dataclass
class Notifier:
    """Records every notice before anything is sent, then delivers it channel by channel.

    A notice is identified by (certificate, kind, key), e.g. (web, expiring, "<serial>:14d");
    it is recorded once, restarts and several instances included, for the channels
    configured at that moment. ``drain`` sends what is due; a channel that fails is not
    used again in that pass (a hanging webhook costs one timeout per tick, not one per
    notice) and only the channels that failed are tried again later, with a back-off.
    """

    rt: Runtime
    webhook_url: str = ""
    sns_topic_arn: str = ""
    timeout: float = 10.0
    _sns: Any = field(default=None, repr=False)
    _sns_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, rt: Runtime) -> Notifier:
        notify = rt.config.sections["notify"]
        return cls(
            rt=rt,
            webhook_url=str(notify["webhook"]["url"]),
            sns_topic_arn=str(notify["sns"]["topic_arn"]),
        )

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(
            name for name, on in ((WEBHOOK, self.webhook_url), (SNS, self.sns_topic_arn)) if on
        )

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    def record(self, certificate: str, kind: str, key: str, payload: dict[str, Any]) -> int | None:
        """Commit the notice for every configured channel; its id (None: known, or no channel)."""
        if not self.enabled:
            return None
        return outbox.record(
            self.rt,
            certificate=certificate,
            kind=kind,
            key=key,
            body=json.dumps(payload),
            channels=self.channels,
        )

    def record_many(self, kind: str, notices: list[tuple[str, str, dict[str, Any]]]) -> None:
        """(certificate, key, payload) notices of one kind in one commit."""
        if self.enabled:
            outbox.record_many(
                self.rt,
                kind,
                [(name, key, json.dumps(payload)) for name, key, payload in notices],
                self.channels,
            )

    def drain(
        self,
        *,
        only: Collection[int] | None = None,
        stopping: Callable[[], bool] = lambda: False,
        progress: Callable[[], None] = lambda: None,
    ) -> int:
        """Send every due notice (or those in ``only``); returns how many are now fully sent."""
        down: dict[str, str] = {}  # channel -> why it failed in this pass
        given_up: dict[str, int] = {}  # channel no longer configured -> notices dropped
        sent = after = 0

        def usable() -> bool:  # with no channel left, stale notices are still given up
            return not self.channels or len(down) < len(self.channels)

        while usable() and not stopping():
            batch = outbox.take(self.rt, after=after, limit=BATCH, only=only)
            if not batch:
                break
            outcomes: list[outbox.Outcome] = []
            try:
                for number, notice in enumerate(batch):
                    if stopping() or not usable():
                        outbox.release(self.rt, batch[number:])  # the next tick tries them
                        break
                    after = notice.id
                    outcomes.append(self._deliver(notice, down, given_up))
            finally:  # one commit per batch; what was sent is marked even if a send raised
                outbox.finish(self.rt, outcomes)
            sent += sum(outcome.sent for outcome in outcomes)
            progress()
        for channel, count in given_up.items():
            log.warning(
                "notices: %d pending for %s given up: it is no longer configured", count, channel
            )
        if down:
            log.warning(
                "notices: %d sent; %s failed, the rest wait for the next tick (%s)",
                sent,
                " and ".join(down),
                "; ".join(f"{c}: {e}" for c, e in down.items()),
            )
        elif sent:
            log.info("notices: %d sent", sent)
        return sent

    def _deliver(
        self, notice: outbox.PendingNotice, down: dict[str, str], given_up: dict[str, int]
    ) -> outbox.Outcome:
        configured = set(self.channels)
        dropped = [c for c in notice.channels if c not in configured]
        for channel in dropped:
            given_up[channel] = given_up.get(channel, 0) + 1
        delivered: list[str] = []
        failed: dict[str, str] = {}
        for channel in notice.channels:
            if channel not in configured or channel in down:
                continue
            error = self._send(channel, notice.body)
            if error is None:
                delivered.append(channel)
            else:
                failed[channel] = down[channel] = error
        return outbox.Outcome(
            notice=notice, delivered=tuple(delivered), failed=failed, dropped=tuple(dropped)
        )

    def _send(self, channel: str, body: str) -> str | None:
        """None when ``channel`` accepted ``body``, else why not (one line)."""
        if channel == WEBHOOK:
            return self._post(body.encode())
        subject = str(json.loads(body).get("detail-type", "certman"))
        return self._publish(body, subject)

    def _post(self, body: bytes) -> str | None:
        shown = redact_webhook_url(self.webhook_url)  # its path and query hold the token
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "certman"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                if 200 <= answer.status < 300:
                    return None
                return f"{shown} answered HTTP {answer.status}"
        except urllib.error.HTTPError as e:
            return f"{shown} answered HTTP {e.code}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            return f"{shown}: {scrub(str(getattr(e, 'reason', e)))}"

    def _publish(self, body: str, subject: str) -> str | None:
        from certman.aws.errors import aws_call

        try:
            with aws_call("sns:Publish", self.sns_topic_arn):
                self._sns_client().publish(
                    TopicArn=self.sns_topic_arn,
                    Subject=subject[:99],  # SNS subjects stop at 100 characters
                    Message=body,
                )
        except CertmanError as e:
            return f"{self.sns_topic_arn}: {e.message}"
        return None

    def _sns_client(self) -> Any:
        """Built on first use and kept (the topic's region, else [aws] region)."""
        with self._sns_lock:  # the preflight job and the tick may both send
            if self._sns is None:
                from certman.aws.clients import region_of

                self._sns = self.rt.aws.client("sns", region_of(self.sns_topic_arn) or None)
            return self._sns


def record_certificate_notice(
    rt: Runtime, notifier: Notifier, name: str, kind: str, key: str, detail: dict[str, object]
) -> int | None:
    """Record one notice about certificate ``name`` (an events.* detail-type), once per key."""
    from certman.scheduler.events import KIND, certificate_event
    from sqlmodel import select as select_model

    from certman.inventory.tables import ManagedCertificate

    if not notifier.enabled:
        return None
    with rt.session() as session:
        cert = session.exec(
            select_model(ManagedCertificate).where(ManagedCertificate.name == name)
        ).first()
    if cert is None:
        return None
    payload = certificate_event(
        kind,
        cert,
        time=rt.clock.now(),
        default_region=str(rt.config.get("aws", "region")),
        detail=detail,
    )
    return notifier.record(name, KIND[kind], key, payload)


def record_failure_notice(
    rt: Runtime, notifier: Notifier, name: str, error: CertmanError, *, key: str | None = None
) -> int | None:
    """A failed renewal or rollout (DeployError): why, and when the next attempt is."""
    from certman.scheduler.events import DEPLOY_FAILED, RENEWAL_FAILED
    from sqlmodel import select as select_model

    from certman.errors import DeployError
    from certman.inventory.tables import ManagedCertificate

    if not notifier.enabled:
        return None
    with rt.session() as session:
        cert = session.exec(
            select_model(ManagedCertificate).where(ManagedCertificate.name == name)
        ).first()
    if cert is None:
        return None
    kind = DEPLOY_FAILED if isinstance(error, DeployError) else RENEWAL_FAILED
    next_attempt = cert.next_attempt_at.isoformat() if cert.next_attempt_at else None
    return record_certificate_notice(
        rt,
        notifier,
        name,
        kind,
        key or f"r{cert.latest_revision}:{cert.failures}",
        {
            "Revision": cert.latest_revision,
            "Error": error.message,
            "Retryable": error.retryable,
            "Failures": cert.failures,
            "NextAttemptAt": next_attempt,
        },
    )


def alert_failure(rt: Runtime, name: str, error: CertmanError, *, key: str | None = None) -> None:
    """From a command (`certman renew`, `certman deploy`): the same notice the service sends.

    Recorded first and sent at once; if a channel is down, the notice stays pending and the
    service sends it on a later tick. Only failed operations (exit code 1) are sent: bad
    input is the operator's to see. A notice that cannot go out never hides the failure.
    """
    if error.exit_code != 1:
        return
    try:
        notifier = Notifier.from_config(rt)
        notice = record_failure_notice(rt, notifier, name, error, key=key)
        if notice is not None:
            notifier.drain(only=[notice])
    except Exception:
        log.exception("%s: could not send the failure notice", name)
