"""Notifications: a webhook JSON POST and/or an SNS publish, each sent once per event key."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from certman.errors import CertmanError
from certman.inventory.tables import Notification
from certman.service.runtime import Runtime

log = logging.getLogger("certman.notify")


@dataclass
class Notifier:
    """Sends to every configured channel and records what went out in the inventory.

    A notification is identified by (certificate, kind, key), e.g. (web, expiring,
    "<serial>:14d"); once recorded it is never sent again, restarts included. A send that
    no channel accepted is not recorded, so the next tick tries it again.
    """

    rt: Runtime
    webhook_url: str = ""
    sns_topic_arn: str = ""
    timeout: float = 10.0
    _sns: Any = field(default=None, repr=False)

    @classmethod
    def from_config(cls, rt: Runtime) -> Notifier:
        notify = rt.config.sections["notify"]
        return cls(
            rt=rt,
            webhook_url=str(notify["webhook"]["url"]),
            sns_topic_arn=str(notify["sns"]["topic_arn"]),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.sns_topic_arn)

    def already_sent(self, kind: str, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (certificate, key) pairs of ``kind`` were sent before (one query per 500)."""
        wanted = list(keys)
        found: set[tuple[str, str]] = set()
        with self.rt.session() as session:
            for start in range(0, len(wanted), 500):
                names = {name for name, _ in wanted[start : start + 500]}
                rows = session.exec(
                    select(Notification.certificate, Notification.key)
                    .where(Notification.kind == kind)
                    .where(col(Notification.certificate).in_(names))
                ).all()
                found.update((name, key) for name, key in rows)
        return found & set(wanted)

    def send_once(self, certificate: str, kind: str, key: str, payload: dict[str, Any]) -> bool:
        """Send unless (certificate, kind, key) went out before; True when it went out now.

        On PostgreSQL several instances may reach the same notice at once: the record is
        inserted first (its unique key makes a second instance wait, then skip) and
        committed only after delivery. SQLite has a single service, and a write lock held
        during an HTTP call would stall it, so there the record follows the delivery.
        """
        if not self.enabled:
            return False
        record = Notification(
            certificate=certificate, kind=kind, key=key, sent_at=self.rt.clock.now()
        )
        with self.rt.session() as session:
            if self._exists(session, certificate, kind, key):
                return False
            if self.rt.engine.dialect.name == "postgresql":
                session.add(record)
                try:
                    session.flush()
                except IntegrityError:  # another instance sent it
                    return False
                if not self.deliver(payload):
                    session.rollback()
                    return False
            else:
                if not self.deliver(payload):
                    return False
                session.add(record)
            try:
                session.commit()
            except IntegrityError:
                return False
        return True

    @staticmethod
    def _exists(session: Any, certificate: str, kind: str, key: str) -> bool:
        return (
            session.exec(
                select(Notification.id)
                .where(Notification.certificate == certificate)
                .where(Notification.kind == kind)
                .where(Notification.key == key)
            ).first()
            is not None
        )

    def deliver(self, payload: dict[str, Any]) -> bool:
        """Every configured channel; True when all of them accepted the message."""
        body = json.dumps(payload).encode()
        ok = True
        if self.webhook_url:
            ok = self._post(body)
        if self.sns_topic_arn:
            ok = self._publish(body, str(payload.get("detail-type", "certman"))) and ok
        return ok

    def _post(self, body: bytes) -> bool:
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "certman"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return 200 <= answer.status < 300
        except (urllib.error.URLError, OSError) as e:
            log.warning("webhook %s failed: %s", self.webhook_url, getattr(e, "reason", e))
            return False

    def _publish(self, body: bytes, subject: str) -> bool:
        from certman.aws.errors import aws_call

        try:
            with aws_call("sns:Publish", self.sns_topic_arn):
                self._sns_client().publish(
                    TopicArn=self.sns_topic_arn,
                    Subject=subject[:99],  # SNS subjects stop at 100 characters
                    Message=body.decode(),
                )
        except CertmanError as e:
            log.warning("SNS publish to %s failed: %s", self.sns_topic_arn, e.message)
            return False
        return True

    def _sns_client(self) -> Any:
        """Built on first use and kept (the topic's region, else [aws] region)."""
        if self._sns is None:
            from certman.aws.clients import region_of

            self._sns = self.rt.aws.client("sns", region_of(self.sns_topic_arn) or None)
        return self._sns


def notify_certificate(
    rt: Runtime, notifier: Notifier, name: str, kind: str, key: str, detail: dict[str, object]
) -> int:
    """One notice about certificate ``name`` (an events.* detail-type), once per key."""
    from sqlmodel import select as select_model

    from certman.inventory.tables import ManagedCertificate
    from scheduler.events import KIND, certificate_event

    if not notifier.enabled:
        return 0
    with rt.session() as session:
        cert = session.exec(
            select_model(ManagedCertificate).where(ManagedCertificate.name == name)
        ).one()
    payload = certificate_event(
        kind,
        cert,
        time=rt.clock.now(),
        default_region=str(rt.config.get("aws", "region")),
        detail=detail,
    )
    return int(notifier.send_once(name, KIND[kind], key, payload))


def notify_failure(
    rt: Runtime, notifier: Notifier, name: str, error: CertmanError, *, key: str | None = None
) -> int:
    """A failed renewal or rollout (DeployError): why, and when the next attempt is."""
    from sqlmodel import select as select_model

    from certman.errors import DeployError
    from certman.inventory.tables import ManagedCertificate
    from scheduler.events import DEPLOY_FAILED, RENEWAL_FAILED

    with rt.session() as session:
        cert = session.exec(
            select_model(ManagedCertificate).where(ManagedCertificate.name == name)
        ).first()
    if cert is None:
        return 0
    kind = DEPLOY_FAILED if isinstance(error, DeployError) else RENEWAL_FAILED
    next_attempt = cert.next_attempt_at.isoformat() if cert.next_attempt_at else None
    return notify_certificate(
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

    Only failed operations (exit code 1) are sent: bad input is the operator's to see.
    A notice that cannot go out is logged; it never hides the failure being reported.
    """
    if error.exit_code != 1:
        return
    try:
        notify_failure(rt, Notifier.from_config(rt), name, error, key=key)
    except Exception:
        log.exception("%s: could not send the failure notice", name)
