"""Redaction of URL passwords and webhook tokens, and scrubbing of free text."""

from __future__ import annotations

from certman.errors import InventoryError, one_line
from certman.redact import redact_url, redact_webhook_url, remember_secrets, scrub


def test_redact_url_masks_the_password_only() -> None:
    url = "postgresql+psycopg://certman:pa%3Ass@db.internal:5432/certman?sslmode=require"
    assert (
        redact_url(url)
        == "postgresql+psycopg://certman:***@db.internal:5432/certman?sslmode=require"
    )


def test_redact_url_leaves_a_url_without_password_alone() -> None:
    assert redact_url("sqlite:////home/a/certman.db") == "sqlite:////home/a/certman.db"
    assert redact_url("postgresql://certman@db/x") == "postgresql://certman@db/x"


def test_redact_webhook_url_masks_path_query_and_password() -> None:
    url = "https://bot:pw@hooks.example.com/services/T0/B1/tok?token=abc#frag"
    assert redact_webhook_url(url) == "https://bot:***@hooks.example.com/***"
    assert redact_webhook_url("https://hooks.example.com/") == "https://hooks.example.com/"
    assert redact_webhook_url("not a url with tok3n") == "***"


def test_scrub_masks_urls_and_conninfo_passwords_in_text() -> None:
    text = "failed for postgresql://u:hunter22@h/db (host=h password=hunter22 user=u)"
    assert "hunter22" not in scrub(text)


def test_every_certman_error_is_scrubbed_of_remembered_secrets() -> None:
    remember_secrets(["/T0/B1/remembered-tok3n"])
    try:
        error = InventoryError("posting to https://h/T0/B1/remembered-tok3n failed.")
        assert error.message == "posting to https://h*** failed."
        assert "remembered-tok3n" not in str(error)
        assert "remembered-tok3n" not in one_line(ValueError("at /T0/B1/remembered-tok3n"))
    finally:
        remember_secrets([])


def test_a_remembered_secret_inside_a_longer_word_is_left_alone() -> None:
    assert scrub("see /home/certman.toml", ["/certman"]) == "see /home/certman.toml"
    assert scrub("POST https://h/certman: refused", ["/certman"]) == "POST https://h***: refused"


def test_a_url_python_cannot_parse_is_masked_whole() -> None:
    assert redact_url("postgresql://u:hunter22@[::1/db") == "***"
    assert redact_webhook_url("https://[::1/T0/tok") == "***"
