"""Notification channels (a webhook, SNS on a moto server) and the outbox behind them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from certman.scheduler.events import EXPIRING, event
from certman.scheduler.notify import BATCH, Notifier
from certman.scheduler.outbox import HOLD
from sqlalchemy import event as sa_event
from sqlmodel import select

from certman.clock import FrozenClock
from certman.inventory.tables import Notification
from certman.service.runtime import Runtime
from tests.components.moto_server import moto_server
from tests.scheduler.conftest import Webhook, make_home, runtime_for

REGION = "eu-west-1"


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto_server() as url:
        yield url


def notice(rt: Runtime, name: str = "web") -> dict[str, object]:
    return event(
        EXPIRING,
        time=rt.clock.now(),
        resources=[f"certman:certificate/{name}"],
        detail={"DaysToExpiry": 13, "CommonName": f"{name}.example.com"},
    )


def rows(rt: Runtime) -> list[Notification]:
    with rt.session() as session:
        return list(session.exec(select(Notification).order_by(Notification.id)).all())


def sqs_queue_on(moto_url: str, topic: str) -> tuple[object, str]:
    sns = boto3.client("sns", region_name=REGION, endpoint_url=moto_url)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_url)
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return sqs, queue


def test_sns_and_the_webhook_get_the_same_json_once_through_one_client(
    tmp_path: Path, moto_url: str, webhook: Webhook
) -> None:
    sns = boto3.client("sns", region_name=REGION, endpoint_url=moto_url)
    topic = sns.create_topic(Name="certman")["TopicArn"]
    sqs, queue = sqs_queue_on(moto_url, topic)
    home = make_home(
        tmp_path / "h",
        f'[aws]\nendpoint_url = "{moto_url}"\n'
        f'[notify.sns]\ntopic_arn = "{topic}"\n[notify.webhook]\nurl = "{webhook.url}"\n',
    )
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    notifier = Notifier.from_config(rt)
    payload = notice(rt)
    assert notifier.record("web", "expiring", "s1:14d", payload) is not None
    assert notifier.record("web", "expiring", "s1:14d", payload) is None, "recorded once only"
    assert notifier.record("web", "expiring", "s1:7d", payload) is not None
    assert notifier.drain() == 2
    assert notifier.drain() == 0, "what was sent is not sent again"
    client = notifier._sns_client()
    assert client is notifier._sns_client(), "the SNS client is built once"
    assert client.meta.region_name == REGION, "the topic's region, not [aws] region"
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]  # type: ignore[attr-defined]
    assert [json.loads(m["Body"]) for m in messages] == [payload, payload]
    assert webhook.received == [payload, payload]
    assert all(r.sent_at is not None and r.pending == "" for r in rows(rt))
    # a restarted service (a new notifier on the same inventory) does not repeat it
    again = Notifier.from_config(runtime_for(home, rt.clock))
    assert again.record("web", "expiring", "s1:7d", payload) is None
    assert again.drain() == 0 and len(webhook.received) == 2


def test_when_sns_fails_the_webhook_is_not_sent_the_notice_again(
    tmp_path: Path, moto_url: str, webhook: Webhook
) -> None:
    missing = f"arn:aws:sns:{REGION}:123456789012:alerts"
    home = make_home(
        tmp_path / "h",
        f'[aws]\nendpoint_url = "{moto_url}"\n'
        f'[notify.sns]\ntopic_arn = "{missing}"\n[notify.webhook]\nurl = "{webhook.url}"\n',
    )
    clock = FrozenClock(datetime.now(UTC))
    rt = runtime_for(home, clock)
    notifier = Notifier.from_config(rt)
    payload = notice(rt)
    notifier.record("web", "expiring", "s1:14d", payload)
    assert notifier.drain() == 0, "SNS did not take it: not fully sent"
    (row,) = rows(rt)
    assert row.pending == "sns" and row.failures == 1 and "sns" in (row.last_error or "")
    assert webhook.received == [payload]
    for _ in range(3):  # SNS still failing, retried after each back-off: the webhook only once
        clock.set(rows(rt)[0].next_attempt_at)  # type: ignore[arg-type]
        assert notifier.drain() == 0
    assert webhook.attempts == 1 and rows(rt)[0].failures == 4
    boto3.client("sns", region_name=REGION, endpoint_url=moto_url).create_topic(Name="alerts")
    sqs, queue = sqs_queue_on(moto_url, missing)
    clock.set(rows(rt)[0].next_attempt_at)  # type: ignore[arg-type]
    assert notifier.drain() == 1
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]  # type: ignore[attr-defined]
    assert [json.loads(m["Body"]) for m in messages] == [payload]
    (row,) = rows(rt)
    assert row.pending == "" and row.sent_at == clock.now() and row.next_attempt_at is None
    assert webhook.attempts == 1


def test_a_notice_is_committed_before_it_is_sent_and_survives_a_restart(
    tmp_path: Path, webhook: Webhook
) -> None:
    home = make_home(tmp_path / "h", f'[notify.webhook]\nurl = "{webhook.url}"\n')
    clock = FrozenClock(datetime.now(UTC))
    rt = runtime_for(home, clock)
    webhook.fail = True
    payload = notice(rt)
    notifier = Notifier.from_config(rt)
    notifier.record("web", "renewal-failed", "r2:1", payload)
    assert notifier.drain() == 0 and webhook.received == []
    (row,) = rows(rt)
    assert row.sent_at is None and row.pending == "webhook"
    assert json.loads(row.payload or "") == payload
    webhook.fail = False
    restarted = Notifier.from_config(runtime_for(home, clock))
    assert restarted.drain() == 0, "not before its back-off has passed"
    clock.advance(timedelta(minutes=2))
    assert restarted.drain() == 1
    assert webhook.received == [payload], "the same event (same id) as recorded"


def test_a_webhook_that_hangs_costs_one_timeout_per_pass_not_one_per_notice(
    tmp_path: Path, webhook: Webhook
) -> None:
    home = make_home(tmp_path / "h", f'[notify.webhook]\nurl = "{webhook.url}"\n')
    clock = FrozenClock(datetime.now(UTC))
    rt = runtime_for(home, clock)
    notifier = Notifier(rt, webhook_url=webhook.url, timeout=0.5)
    for number in range(5):
        notifier.record(f"c{number}", "expiring", "s:14d", notice(rt, f"c{number}"))
    webhook.hang = 30
    assert notifier.drain() == 0
    assert webhook.attempts == 1, "the webhook was given up for the rest of the pass"
    assert [r.pending for r in rows(rt)] == ["webhook"] * 5
    assert [r.failures for r in rows(rt)] == [1, 0, 0, 0, 0], "only the one tried failed"
    webhook.hang = 0
    clock.advance(timedelta(minutes=2))
    assert notifier.drain() == 5
    assert sorted(n["detail"]["CommonName"] for n in webhook.received) == [
        f"c{n}.example.com" for n in range(5)
    ]


def test_notices_are_marked_once_per_batch_not_once_per_notice(
    tmp_path: Path, webhook: Webhook
) -> None:
    home = make_home(tmp_path / "h", f'[notify.webhook]\nurl = "{webhook.url}"\n')
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    notifier = Notifier.from_config(rt)
    notifier.record_many(
        "expiring", [(f"c{n:03d}", "s:14d", notice(rt, f"c{n:03d}")) for n in range(BATCH + 50)]
    )
    commits: list[object] = []
    sa_event.listen(rt.engine, "commit", commits.append)
    assert notifier.drain() == BATCH + 50
    # two batches: each held by one commit and marked by one, whatever its size
    assert len(commits) == 4
    assert all(r.sent_at is not None and r.pending == "" for r in rows(rt))
    assert len({n["id"] for n in webhook.received}) == BATCH + 50


def test_a_crash_in_the_middle_of_a_batch_keeps_what_was_sent_marked(
    tmp_path: Path, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path / "h", f'[notify.webhook]\nurl = "{webhook.url}"\n')
    clock = FrozenClock(datetime.now(UTC))
    rt = runtime_for(home, clock)
    notifier = Notifier.from_config(rt)
    for number in range(5):
        notifier.record(f"c{number}", "expiring", "s:14d", notice(rt, f"c{number}"))
    post = notifier._post

    def crash_on_the_third(body: bytes) -> str | None:
        if webhook.attempts == 2:
            raise RuntimeError("a bug in the sender")
        return post(body)

    monkeypatch.setattr(notifier, "_post", crash_on_the_third)
    with pytest.raises(RuntimeError):
        notifier.drain()
    assert [r.sent_at is not None for r in rows(rt)] == [True, True, False, False, False]
    monkeypatch.undo()
    assert Notifier.from_config(rt).drain() == 0, "the rest are held until HOLD has passed"
    clock.advance(HOLD)
    assert Notifier.from_config(rt).drain() == 3
    names = [n["detail"]["CommonName"] for n in webhook.received]
    assert names == [f"c{n}.example.com" for n in range(5)], "none sent twice"


def test_a_channel_taken_out_of_the_configuration_is_given_up(
    tmp_path: Path, webhook: Webhook
) -> None:
    home = make_home(tmp_path / "h", f'[notify.webhook]\nurl = "{webhook.url}"\n')
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    webhook.fail = True
    Notifier.from_config(rt).record("web", "expiring", "s:14d", notice(rt))
    Notifier.from_config(rt).drain()
    rt.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    assert Notifier(rt).drain() == 0  # the operator removed [notify.webhook] url
    (row,) = rows(rt)
    assert row.pending == "" and row.next_attempt_at is None and row.sent_at is None
    assert row.last_error == "webhook is no longer configured"
    assert webhook.attempts == 1


def test_instances_draining_one_postgresql_at_once_send_each_notice_once(
    tmp_path: Path, pg_url: str, webhook: Webhook
) -> None:
    home = make_home(
        tmp_path / "h", f'[database]\nurl = "{pg_url}"\n[notify.webhook]\nurl = "{webhook.url}"\n'
    )
    clock = FrozenClock(datetime.now(UTC))
    rt = runtime_for(home, clock)
    notifier = Notifier.from_config(rt)
    for number in range(120):
        notifier.record(f"c{number:03d}", "expiring", "s:14d", notice(rt, f"c{number:03d}"))
    instances = [Notifier.from_config(runtime_for(home, clock)) for _ in range(3)]
    start = threading.Barrier(len(instances))
    sent: list[int] = []

    def drain(each: Notifier) -> None:
        start.wait()
        sent.append(each.drain())

    threads = [threading.Thread(target=drain, args=(each,)) for each in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(sent) == 120
    ids = [n["id"] for n in webhook.received]
    assert len(ids) == 120 and len(set(ids)) == 120, "a notice went out twice"
    assert all(r.sent_at is not None for r in rows(rt))
    for each in [*instances, notifier]:
        each.rt.engine.dispose()
