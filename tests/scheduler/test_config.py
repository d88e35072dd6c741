"""[service] and [notify]: defaults, and mistakes refused when the file is loaded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from certman.config import load_config
from certman.errors import ConfigError


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "certman.toml"
    path.write_text(text)
    return load_config(tmp_path, path)


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.message


def test_the_service_has_working_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.duration("service", "interval") == timedelta(seconds=60)
    assert config.duration("service", "max_backoff") == timedelta(hours=32)
    assert config.get("service", "listen") == "127.0.0.1:9464"
    assert config.get("notify", "thresholds") == ["30d", "14d", "7d", "3d", "1d"]
    assert config.get("notify", "webhook") == {"url": ""}


def test_a_partial_notify_table_keeps_the_other_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, '[notify.webhook]\nurl = "https://hooks.example.com/certman"\n')
    assert config.get("notify", "webhook")["url"] == "https://hooks.example.com/certman"
    assert config.get("notify", "sns") == {"topic_arn": ""}
    assert config.get("notify", "thresholds") == ["30d", "14d", "7d", "3d", "1d"]


def test_zero_jitter_is_allowed_but_a_zero_interval_is_not(tmp_path: Path) -> None:
    assert load(tmp_path, '[service]\njitter = "0s"\n').duration("service", "jitter") == timedelta()
    assert "service.interval must be longer than zero" in refusal(
        tmp_path, '[service]\ninterval = "0s"\n'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[service]\nintervall = "1m"\n', "Unknown key service.intervall"),
        ('[service]\nmax_backoff = "soon"\n', "service.max_backoff 'soon' is not a duration"),
        ('[service]\nlisten = "9464"\n', "service.listen must be host:port"),
        ('[notify]\nthresholds = ["30d", "a week"]\n', "notify.thresholds 'a week'"),
        ("[notify]\nthresholds = [30]\n", "write durations like"),
        ('[notify]\nthresholds = "30d"\n', "notify.thresholds in"),
        ('[notify.webhook]\nurl = "hooks.example.com"\n', "must be an http(s) URL"),
        ('[notify.webhook]\nuri = "https://x"\n', "Unknown key notify.webhook.uri"),
        ('[notify.sns]\ntopic_arn = "certman-alerts"\n', "must be an SNS topic ARN"),
    ],
)
def test_mistakes_are_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = refusal(tmp_path, text)
    assert expected in message and str(tmp_path / "certman.toml") in message
