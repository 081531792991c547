"""How a webhook publisher is configured: signed unless told otherwise, its secret from an
option or TURNOUT_WEBHOOK_SECRET, and a clear UsageError for anything it cannot use."""

from __future__ import annotations

import os

import pytest

from engine import UsageError
from engine.brokers import open_publisher as open_any_publisher
from engine.brokers import open_source as open_any_source
from engine.brokers.signatures import signature_header, verify_signature
from engine.brokers.webhooks import SECRET_ENV, UNSIGNED_ENV, WebhookPublisher, open_publisher

SECRET = "s3cret-shared-with-the-receiver"
URL = "http://127.0.0.1:9/hooks"


@pytest.fixture(autouse=True)
def no_webhook_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TURNOUT_WEBHOOK_"):
            monkeypatch.delenv(name)


def test_http_urls_open_a_webhook_publisher_and_no_source() -> None:
    assert isinstance(open_any_publisher(URL, secret=SECRET), WebhookPublisher)
    assert isinstance(open_any_publisher("https://example.org/in", secret=SECRET), WebhookPublisher)
    with pytest.raises(UsageError, match="webhooks only send"):
        open_any_source(URL)


def test_a_publisher_without_a_secret_is_refused_unless_unsigned() -> None:
    with pytest.raises(UsageError, match=SECRET_ENV):
        open_publisher(URL)
    assert open_publisher(URL, unsigned=True).settings.secret is None
    assert open_publisher(URL, unsigned="true").settings.secret is None


def test_the_secret_and_unsigned_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert open_publisher(URL).settings.secret == SECRET
    assert open_publisher(URL, secret="an-option-wins-over-it").settings.secret == (
        "an-option-wins-over-it"
    )
    monkeypatch.delenv(SECRET_ENV)
    monkeypatch.setenv(UNSIGNED_ENV, "1")
    assert open_publisher(URL).settings.secret is None


def test_options_given_as_text_are_read_as_numbers() -> None:
    settings = open_publisher(URL, secret=SECRET, timeout="2.5", retries="3").settings
    assert (settings.timeout, settings.retries) == (2.5, 3)


def test_options_not_given_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_WEBHOOK_MAX_ATTEMPTS", "12")
    monkeypatch.setenv("TURNOUT_WEBHOOK_TIMEOUT", "4")
    settings = open_publisher(URL, secret=SECRET, timeout=2).settings
    assert (settings.max_attempts, settings.timeout, settings.retries) == (12, 2.0, 5)
    monkeypatch.setenv("TURNOUT_WEBHOOK_RETRIES", "several")
    with pytest.raises(UsageError, match="TURNOUT_WEBHOOK_RETRIES must be a number"):
        open_publisher(URL, secret=SECRET)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret": "short"}, "at least 16 characters"),
        ({"secret": SECRET, "retries": "many"}, "retries must be a number"),
        ({"secret": SECRET, "retries": 0}, "retries must be at least 1"),
        ({"secret": SECRET, "timeout": -1}, "timeout must be at least"),
        ({"secret": SECRET, "colour": "blue"}, "unknown webhook options: colour"),
    ],
)
def test_unusable_options_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        open_publisher(URL, **options)


@pytest.mark.parametrize(
    "url",
    [
        "http://",
        "http:///path",
        "http://127.0.0.1:port/",
        "http://h/" + "x" * 2000,
        "http://h/caf\u00e9",
        "ftp://h/in",
    ],
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(UsageError, match="webhook URL"):
        open_publisher(url, secret=SECRET)


def test_a_refused_url_is_not_repeated_with_its_password_or_query() -> None:
    with pytest.raises(UsageError) as refused:
        open_publisher("http://user:hunter22@host:port/in?token=abc", secret=SECRET)
    assert "hunter22" not in str(refused.value) and "abc" not in str(refused.value)


def test_a_publisher_outside_a_relay_needs_an_engine_for_its_log() -> None:
    with pytest.raises(UsageError, match="delivery log"):
        open_publisher(URL, secret=SECRET).publish([])


def test_a_signature_names_its_timestamp_and_checks_against_the_receivers_clock() -> None:
    header = signature_header(SECRET, 1_700_000_000, b'{"id": "x.1"}')
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(b'{"id": "x.1"}', header, SECRET, now=1_700_000_299)
    assert not verify_signature(b'{"id": "x.1"}', header, SECRET, now=1_699_999_600)
    assert verify_signature(b'{"id": "x.1"}', header, SECRET, tolerance=600, now=1_700_000_500)
    assert not verify_signature(b'{"id": "x.1"}', "garbage", SECRET, now=1_700_000_000)
    rotated = header + ",v1=" + "0" * 64
    assert verify_signature(b'{"id": "x.1"}', rotated, SECRET, now=1_700_000_000)
