"""Notification channels: SNS (against a moto server) and the once-only record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from certman.clock import FrozenClock
from scheduler.events import EXPIRING, event
from scheduler.notify import Notifier
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


def test_sns_gets_the_same_json_once_through_one_client(
    tmp_path: Path, moto_url: str, webhook: Webhook
) -> None:
    sns = boto3.client("sns", region_name=REGION, endpoint_url=moto_url)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_url)
    topic = sns.create_topic(Name="certman")["TopicArn"]
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
    home = make_home(
        tmp_path / "h",
        f'[aws]\nendpoint_url = "{moto_url}"\n'
        f'[notify.sns]\ntopic_arn = "{topic}"\n[notify.webhook]\nurl = "{webhook.url}"\n',
    )
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    notifier = Notifier.from_config(rt)
    payload = event(
        EXPIRING,
        time=rt.clock.now(),
        resources=["certman:certificate/web"],
        detail={"DaysToExpiry": 13, "CommonName": "web.example.com"},
    )
    assert notifier.send_once("web", "expiring", "s1:14d", payload)
    assert not notifier.send_once("web", "expiring", "s1:14d", payload), "sent once only"
    assert notifier.send_once("web", "expiring", "s1:7d", payload)
    client = notifier._sns_client()
    assert client is notifier._sns_client(), "the SNS client is built once"
    assert client.meta.region_name == REGION, "the topic's region, not [aws] region"
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [payload, payload]
    assert webhook.received == [payload, payload]
    # a restarted service (a new notifier on the same inventory) does not repeat it
    assert not Notifier.from_config(runtime_for(home, rt.clock)).send_once(
        "web", "expiring", "s1:7d", payload
    )


def test_sns_failure_leaves_the_notice_unsent_for_the_next_tick(
    tmp_path: Path, moto_url: str
) -> None:
    missing = f"arn:aws:sns:{REGION}:123456789012:missing"
    home = make_home(
        tmp_path / "h",
        f'[aws]\nendpoint_url = "{moto_url}"\n[notify.sns]\ntopic_arn = "{missing}"\n',
    )
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    notifier = Notifier.from_config(rt)
    payload = event(EXPIRING, time=rt.clock.now(), resources=[], detail={})
    assert not notifier.send_once("web", "expiring", "k", payload)
    sns = boto3.client("sns", region_name=REGION, endpoint_url=moto_url)
    sns.create_topic(Name="missing")
    assert notifier.send_once("web", "expiring", "k", payload)
