"""Webhooks: the change feed POSTed to an HTTP receiver, one request per change, signed with
a shared secret and timestamped, retried with backoff, and written in a delivery log.

A receiver that answers 2xx has the change. A connection error, a timeout, 408, 429 or a
5xx is tried again, backing off, and holds the feed for that URL (as a broker that is away
does): nothing is skipped and each instance's changes arrive in revision order. Any other
answer (a 4xx, a redirect) refuses the change for good: the log records it as failed, with
its body, the relay goes on, and `resend_failed` sends it again once the receiver is fixed.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from statemachines.errors import InvalidInput, UsageError

from ..changes import Change
from ..tables import WEBHOOK_URL_LENGTH
from . import delivery_log
from .delivery_log import Delivery, DeliveryStatus, Item
from .signatures import signature_header

if TYPE_CHECKING:
    from ..engine import Engine
    from .base import Relay

SECRET_ENV = "TURNOUT_WEBHOOK_SECRET"
UNSIGNED_ENV = "TURNOUT_WEBHOOK_UNSIGNED"
MIN_SECRET_LENGTH = 16
RETRIED_STATUS_CODES = frozenset({408, 429})
MAX_LISTED = 10_000
USER_AGENT = "turnout-webhooks/1"


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # the receiver is away or busy: try again later
    REFUSED = "refused"  # the receiver will not take this change as it is


@dataclass(frozen=True)
class Attempt:
    """What one POST came to."""

    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Settings:
    """How a publisher signs, times out and retries (the options of `open_publisher`)."""

    secret: str | None
    timeout: float = 10.0
    retries: int = 5  # attempts per change before the relay is told the receiver is away
    backoff: float = 0.5  # the first wait; it doubles each attempt, with jitter
    max_backoff: float = 30.0
    max_attempts: int | None = None  # in all, across relay runs: then failed, not retried


@dataclass
class Resent:
    """What sending one URL's failed deliveries again came to."""

    url: str
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def shown(url: str) -> str:
    """The URL without its user, password and query (which may carry secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ":?"
    return f"{parts.scheme}://{host}{port}{parts.path}"


class WebhookPublisher:
    """POSTs changes to one URL and keeps the delivery log; a `Relay` attaches its engine."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        engine: Engine | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        jitter: random.Random | None = None,
    ) -> None:
        self.url = url
        self.settings = settings
        self.engine = engine
        self._sleep = sleep
        self._relay: Relay | None = None
        self._clock = clock
        self._jitter = jitter or random.Random()
        self._client: httpx.Client | None = None
        self._unwritten: list[tuple[Item, DeliveryStatus, Attempt, datetime, datetime | None]] = []

    def attach(self, relay: Relay) -> None:
        """Keep the delivery log in the relay's database, and stop waiting between attempts
        when the relay is stopping (called by the relay)."""
        self.engine = relay.engine
        self._relay = relay

    def sleep(self, seconds: float) -> None:
        """Wait between attempts: the injected `sleep`, else until the relay stops (then
        InterruptedError: the change is tried again by the next run) or time is up."""
        if self._sleep is not None:
            self._sleep(seconds)
        elif self._relay is None:
            time.sleep(seconds)
        elif self._relay.stopping.wait(seconds):
            raise InterruptedError("the relay is stopping")

    def clock(self) -> datetime:
        if self._clock is not None:
            return self._clock()
        if self.engine is not None:
            return self.engine.clock()
        return datetime.now(UTC)

    def publish(self, changes: list[Change]) -> None:
        """POST each change in order, skipping those the log says were delivered or failed;
        return once each is delivered or failed; ConnectionError when the receiver stays
        away for `retries` attempts (the relay then tries the batch again later)."""
        engine = self._engine()
        with engine.store.core() as conn:
            seen = delivery_log.known(conn, self.url, [change.id for change in changes])
        try:
            for change in changes:
                before = seen.get(change.id)
                if before is not None and before.status is not DeliveryStatus.PENDING:
                    continue
                body = json.dumps(change.to_json()).encode()
                item = Item(change.id, change.position, change.instance_id, change.revision, body)
                self._deliver(item, before.attempts if before else 0, resending=False)
        finally:
            self._write()

    def resend_failed(self, limit: int = 1000) -> Resent:
        """Send this URL's failed deliveries again, in feed order, with the body first
        sent; each ends delivered or failed again. Stops at the first one the receiver
        will not take for being away (the rest stay failed)."""
        engine = self._engine()
        with engine.store.core() as conn:
            items = delivery_log.failed_items(conn, self.url, limit)
        resent = Resent(shown(self.url))
        try:
            for number, (item, attempts) in enumerate(items):
                try:
                    status = self._deliver(item, attempts, resending=True)
                except ConnectionError as exc:
                    resent.failed += len(items) - number
                    resent.errors.append(str(exc))
                    break
                if status is DeliveryStatus.DELIVERED:
                    resent.delivered += 1
                else:
                    resent.failed += 1
        finally:
            self._write()
        return resent

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _engine(self) -> Engine:
        if self.engine is None:
            raise UsageError(
                "a webhook publisher keeps its delivery log in the database: run it in a "
                "Relay, or give it engine="
            )
        return self.engine

    def _deliver(self, item: Item, attempts: int, *, resending: bool) -> DeliveryStatus:
        """Try `item` until the receiver takes it, refuses it, or stays away for
        `retries` attempts (ConnectionError); the log records every attempt."""
        settings = self.settings
        tries = 0
        while True:
            tries += 1
            attempts += 1
            attempt = self._post(item, attempts)
            if attempt.outcome is Outcome.DELIVERED:
                status, wait = DeliveryStatus.DELIVERED, None
            elif attempt.outcome is Outcome.REFUSED:
                status, wait = DeliveryStatus.FAILED, None
            elif settings.max_attempts is not None and attempts >= settings.max_attempts:
                status, wait = DeliveryStatus.FAILED, None
            elif tries >= settings.retries:
                status = DeliveryStatus.FAILED if resending else DeliveryStatus.PENDING
                self._record(item, status, attempt, None)
                raise ConnectionError(
                    f"the webhook receiver {shown(self.url)} did not take change {item.change_id} "
                    f"after {tries} attempts: {attempt.error}"
                )
            else:
                status, wait = DeliveryStatus.PENDING, self._wait(tries, attempt.retry_after)
            self._record(item, status, attempt, wait)
            if wait is None:
                return status
            self.sleep(wait)

    def _wait(self, tries: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half of it random), or what Retry-After asked,
        never past max_backoff."""
        settings = self.settings
        if retry_after is not None:
            return min(retry_after, settings.max_backoff)
        wait = min(settings.backoff * 2.0 ** (tries - 1), settings.max_backoff)
        return wait / 2 + self._jitter.uniform(0, wait / 2)

    def _record(
        self, item: Item, status: DeliveryStatus, attempt: Attempt, wait: float | None
    ) -> None:
        """Log an attempt. Deliveries are written together when the batch ends (one
        transaction, not one per change): a crash before then sends them again, which
        at-least-once allows; a retry or a failure is written at once."""
        now = self.clock()
        following = None if wait is None else now + timedelta(seconds=wait)
        self._unwritten.append((item, status, attempt, now, following))
        if status is not DeliveryStatus.DELIVERED:
            self._write()

    def _write(self) -> None:
        """Write the attempts logged so far. If the database refuses, they are dropped:
        their changes are sent again (the relay's cursor has not passed them)."""
        unwritten, self._unwritten = self._unwritten, []
        if not unwritten:
            return
        with self._engine().store.core(write=True) as conn:
            for item, status, attempt, now, following in unwritten:
                delivery_log.record(
                    conn,
                    self.url,
                    item,
                    status,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    now=now,
                    next_attempt_at=following,
                )

    def _post(self, item: Item, attempt: int) -> Attempt:
        timestamp = int(self.clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Turnout-Change-Id": item.change_id,
            "Turnout-Timestamp": str(timestamp),
            "Turnout-Attempt": str(attempt),
        }
        if self.settings.secret is not None:
            headers["Turnout-Signature"] = signature_header(
                self.settings.secret, timestamp, item.body
            )
        if self._client is None:
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.settings.timeout), follow_redirects=False
            )
        try:
            response = self._client.post(self.url, content=item.body, headers=headers)
        except httpx.TransportError as exc:
            return Attempt(Outcome.RETRY, error=f"{type(exc).__name__}: {exc}")
        code = response.status_code
        if 200 <= code < 300:
            return Attempt(Outcome.DELIVERED, code)
        said = " ".join(response.text[:400].split())[:200]  # one line in the log and the CLI
        error = f"HTTP {code} {response.reason_phrase}: {said}".rstrip(": ")
        if code >= 500 or code in RETRIED_STATUS_CODES:
            return Attempt(Outcome.RETRY, code, error, _retry_after(response))
        return Attempt(Outcome.REFUSED, code, error)


def _retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds, when it is a number of them."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# -- opening -----------------------------------------------------------------------------------
def _number(value: Any, where: str, kind: type[Any], least: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where} must be a number, not {value!r}") from None
    if number < least:
        raise UsageError(f"{where} must be at least {least}")
    return number


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def settings_of(options: dict[str, Any]) -> Settings:
    """The settings the options name; one not given comes from the environment variable
    TURNOUT_WEBHOOK_<NAME> (TURNOUT_WEBHOOK_SECRET, TURNOUT_WEBHOOK_RETRIES ...), which is
    how `turnout relay` is configured. UsageError for an unknown option, a bad value, or no
    secret unless unsigned."""
    options = dict(options)
    secret = options.pop("secret", None) or os.environ.get(SECRET_ENV) or None
    unsigned = _flag(options.pop("unsigned", os.environ.get(UNSIGNED_ENV, "")))
    values: dict[str, Any] = {}
    kinds = {"timeout": (float, 0.001), "retries": (int, 1), "backoff": (float, 0.0)}
    kinds |= {"max_backoff": (float, 0.0), "max_attempts": (int, 1)}
    for name, (kind, least) in kinds.items():
        value, where = options.pop(name, None), f"the webhook option {name}"
        if value is None:
            variable = f"TURNOUT_WEBHOOK_{name.upper()}"
            value, where = os.environ.get(variable) or None, variable
        if value is not None:
            values[name] = _number(value, where, kind, least)
    if options:
        raise UsageError(f"unknown webhook options: {', '.join(sorted(options))}")
    if secret is None and not unsigned:
        raise UsageError(
            f"webhooks are signed: set {SECRET_ENV} (or secret=), or say unsigned=true "
            f"({UNSIGNED_ENV}=1) to send them without a signature"
        )
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise UsageError(f"the webhook secret must be at least {MIN_SECRET_LENGTH} characters")
    return Settings(secret=None if unsigned else secret, **values)


def check_url(url: str) -> None:
    """UsageError unless `url` is one the publisher can POST to and the log can keep."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname or not port_ok:
        raise UsageError(
            f"a webhook URL is http:// or https:// with a host (and a port number, if any): "
            f"{shown(url)!r}"
        )
    if len(url) > WEBHOOK_URL_LENGTH:
        raise UsageError(f"a webhook URL is at most {WEBHOOK_URL_LENGTH} characters")
    if not url.isascii():
        raise UsageError("a webhook URL is ASCII: percent-encode its path and punycode its host")


def open_publisher(url: str, **options: Any) -> WebhookPublisher:
    """A publisher POSTing to `url`. Options: secret, unsigned, timeout, retries, backoff,
    max_backoff, max_attempts (see `Settings`); and, for embedding and tests, engine,
    sleep (instead of time.sleep), clock (the signatures' and the log's time)."""
    check_url(url)
    hooks = {name: options.pop(name) for name in ("engine", "sleep", "clock") if name in options}
    return WebhookPublisher(url, settings_of(options), **hooks)


def open_source(url: str, **options: Any) -> Any:
    raise UsageError("webhooks only send changes: an http(s):// URL cannot be a source")


# -- the delivery log, for operators -----------------------------------------------------------
def deliveries(
    engine: Engine,
    *,
    status: DeliveryStatus | str | None = None,
    url: str | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """The delivery log, per URL in feed order: at most `limit` rows, only those with
    `status` (pending, delivered, failed) and to `url` when given."""
    if not 0 < limit <= MAX_LISTED:
        raise InvalidInput(f"limit must be between 1 and {MAX_LISTED}")
    try:
        wanted = None if status is None else DeliveryStatus(status)
    except ValueError:
        known = ", ".join(str(member) for member in DeliveryStatus)
        raise InvalidInput(f"a delivery status is one of {known}, not {status!r}") from None
    with engine.store.core() as conn:
        return delivery_log.listing(conn, wanted, url, limit)


def resend_failed(
    engine: Engine, url: str | None = None, *, limit: int = 1000, **options: Any
) -> list[Resent]:
    """Send the failed deliveries again, to `url` or to every URL that has some, each
    with a publisher made from `options` (as `open_publisher`'s: the secret...)."""
    with engine.store.core() as conn:
        urls = delivery_log.failed_urls(conn) if url is None else [url]
    outcomes = []
    for target in urls:
        publisher = open_publisher(target, engine=engine, **options)
        try:
            outcomes.append(publisher.resend_failed(limit))
        finally:
            publisher.close()
    return outcomes


def prune_deliveries(engine: Engine, older_than: timedelta | float, *, batch: int = 1000) -> int:
    """Delete the log's rows of deliveries made more than `older_than` ago (failed and
    pending ones stay); how many went."""
    age = older_than if isinstance(older_than, timedelta) else timedelta(seconds=older_than)
    before = engine.clock() - age
    total = 0
    while True:
        with engine.store.core(write=True) as conn:
            gone = delivery_log.prune(conn, before, batch)
        total += gone
        if gone < batch:
            return total
