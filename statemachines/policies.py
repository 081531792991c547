"""Reading the policies of a task: its retry (one policy, or policies by error type) and a
foreach's tolerated failures. A mixin of the definition builder."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .loader import PathKey
from .model import MAX_FOREACH_ITEMS, MAX_NAME_LENGTH, Retry, RetryPolicy, Tolerance
from .reading import ERROR_TYPE_RE, Reader, kind_of

RETRY_KEYS = ("attempts", "delay", "backoff", "max_delay", "jitter")
PERCENT_RE = re.compile(r"^(100(?:\.0{1,6})?|[0-9]{1,2}(?:\.[0-9]{1,6})?)%$")  # 10%, 2.5%
MAX_ATTEMPTS = 100
MAX_RETRY_POLICIES = 20  # a task's policies by error type
MAX_RETRY_ERRORS = 50  # error types one policy names


class PolicyReader(Reader):
    """Reads `retry` and `tolerate`, noting problems at their lines."""

    def retry(self, raw: Any, where: PathKey) -> Retry:
        """`retry`: one policy for every error type (a mapping), or policies by error type
        (a list, each with its `errors`, the one without them last)."""
        if not isinstance(raw, list | dict):
            self.fail(where, f"retry must be a policy or a list of policies, not {kind_of(raw)}")
            return Retry()
        if isinstance(raw, dict):
            if "errors" in raw:
                self.fail(
                    (*where, "errors"),
                    "errors belongs to a policy in a list: write retry: [{errors: [...], ...}]",
                    key=True,
                )
            return Retry((self.retry_policy(raw, where, (*RETRY_KEYS, "errors")),))
        if not 1 <= len(raw) <= MAX_RETRY_POLICIES:
            self.fail(where, f"a list of retry policies has 1 to {MAX_RETRY_POLICIES} entries")
            return Retry()
        policies: list[RetryPolicy] = []
        seen: set[str] = set()
        for index, item in enumerate(raw):
            at = (*where, index)
            data = self.mapping(item, at, "a retry policy")
            policy = self.retry_policy(data, at, (*RETRY_KEYS, "errors"))
            if data is not None and "errors" in data:
                policy = dataclasses.replace(policy, errors=self.error_types(data, at, seen))
            elif index < len(raw) - 1:
                self.fail(at, "a policy without errors takes every other type: put it last")
            policies.append(policy)
        return Retry(tuple(policies))

    def error_types(self, data: dict[str, Any], where: PathKey, seen: set[str]) -> tuple[str, ...]:
        """A policy's `errors`: error type names, each in one policy only."""
        raw, at = data["errors"], (*where, "errors")
        if not isinstance(raw, list) or not raw or len(raw) > MAX_RETRY_ERRORS:
            self.fail(at, f"errors must be a list of 1 to {MAX_RETRY_ERRORS} error types")
            return ()
        types: list[str] = []
        for index, name in enumerate(raw):
            if not (isinstance(name, str) and ERROR_TYPE_RE.match(name)):
                self.fail((*at, index), f"error type {name!r} must be a name like 'Timeout'")
            elif name in seen:
                message = "a failure goes to the first policy naming it"
                self.fail((*at, index), f"error type {name!r} is listed twice: {message}")
            else:
                self.too_long(name, MAX_NAME_LENGTH, "error type", (*at, index))
                seen.add(name)
                types.append(name)
        return tuple(types)

    def retry_policy(
        self, data: dict[str, Any] | None, where: PathKey, allowed: tuple[str, ...]
    ) -> RetryPolicy:
        policy = RetryPolicy()
        if data is None:
            return policy
        self.keys(data, where, allowed, "retry")
        attempts = data.get("attempts", 1)
        if not whole(attempts, MAX_ATTEMPTS):
            self.fail((*where, "attempts"), f"attempts must be an integer from 1 to {MAX_ATTEMPTS}")
            attempts = 1
        backoff = data.get("backoff", 2.0)
        number = isinstance(backoff, int | float) and not isinstance(backoff, bool)
        if not (number and 1 <= backoff <= 100):
            self.fail((*where, "backoff"), "backoff must be a number from 1 to 100")
            backoff = 2.0
        jitter = data.get("jitter", False)
        if not isinstance(jitter, bool):
            self.fail((*where, "jitter"), "jitter must be true or false")
            jitter = False
        delay = self.optional_duration(data, "delay", where)
        max_delay = self.optional_duration(data, "max_delay", where)
        return RetryPolicy(
            attempts=attempts,
            delay=delay or policy.delay,
            backoff=float(backoff),
            max_delay=max_delay,
            jitter=jitter,
        )

    def tolerance(self, value: Any, where: PathKey) -> Tolerance | None:
        """`tolerate: N` (a number of items) or `tolerate: "P%"` (of the items)."""
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value <= MAX_FOREACH_ITEMS:
                return Tolerance(count=value)
        elif isinstance(value, str):
            match = PERCENT_RE.match(value)
            if match:
                return Tolerance(percent=match.group(1))
        self.fail(
            where,
            f"tolerate must be a number of items from 0 to {MAX_FOREACH_ITEMS} "
            f"or a percentage from 0% to 100% such as '10%', not {value!r}",
        )
        return None


def whole(value: Any, most: int) -> bool:
    """Whether `value` is an integer (not a boolean) from 1 to `most`."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= most
