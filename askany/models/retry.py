"""Retries for model downloads: which network failures are worth another try, and how often.

Transient errors (connection errors, timeouts, 408/429/5xx, a short read) are
retried `ATTEMPTS` times with exponential backoff (tenacity), so an unreachable
endpoint fails in seconds with one sentence naming the fix (`unreachable`). A retried
download continues where it stopped: huggingface_hub and `download_hanlp` resume a
partial file with an HTTP Range request.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from askany.models.files import HubUnreachableError, is_disk_full, short_error

log = logging.getLogger(__name__)

ATTEMPTS = 3  # tries per network step, so an unreachable endpoint fails in seconds
BACKOFF_SECONDS = 0.5  # doubled after each failed try
MIRROR_EXAMPLE = "https://hf-mirror.com"

T = TypeVar("T")


class Transient(Exception):
    """A network step ended early (short read, incomplete snapshot): worth another try."""


def retrying(step: Callable[[], T], what: str) -> T:
    """Run `step`, retrying transient failures up to ATTEMPTS times with exponential backoff.

    The last failure is raised as it is. ATTEMPTS and BACKOFF_SECONDS are read on each call,
    so tests (and callers) can change them.
    """
    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s failed (%s); trying again in %.1fs (%d of %d)", what,
                    short_error(error) if error else "?", delay, state.attempt_number + 1, ATTEMPTS)

    retryer = Retrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=BACKOFF_SECONDS),  # BACKOFF_SECONDS * 2 ** (try - 1)
        retry=retry_if_exception(lambda error: is_transient(error) and not is_disk_full(error)),
        before_sleep=log_retry,
        reraise=True,
    )
    return retryer(step)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level error classes of whichever HTTP stacks are installed (hub 2.x: httpx2)."""
    classes: list[type[BaseException]] = [Transient, TimeoutError, ConnectionError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout"),
                         ("huggingface_hub.errors", "LocalEntryNotFoundError")):
        with contextlib.suppress(ImportError, AttributeError):
            classes.append(getattr(__import__(module, fromlist=[name]), name))
    return tuple(classes)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, _transport_errors()):
        return True
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status in (408, 429, 500, 502, 503, 504):
        return True
    return isinstance(error, OSError) and "Consistency check failed" in str(error)


def unreachable(endpoint: str, what: str, error: BaseException) -> HubUnreachableError:
    """The error for a hub that did not answer: every way round it, in one sentence."""
    return HubUnreachableError(
        f"{endpoint} does not answer ({short_error(error)}) while fetching {what}; check the network or proxy "
        f"(HTTPS_PROXY), set HF_ENDPOINT to a reachable mirror such as {MIRROR_EXAMPLE}, use --source modelscope, "
        f"or bring the models in a bundle made with --export-models and load it with --import-models.")
