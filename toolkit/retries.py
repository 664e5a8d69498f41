"""Which failed requests are worth another attempt, what kind of error each is (the requests
table's `error_type`), and how long to wait before the next try."""
from __future__ import annotations

import json
import random

import httpx2
import openai

from toolkit.config import RetryPolicy
from toolkit.measure import DroppedStream

RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
             openai.APIConnectionError, httpx2.TransportError, json.JSONDecodeError, DroppedStream)


def error_kind(exc: BaseException) -> tuple[str, int | None]:
    """The `error_type` and `http_status` a failed request is recorded with."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", status
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return "timeout", None
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return "connection", None
    if isinstance(exc, json.JSONDecodeError):
        return "malformed_stream", None
    if isinstance(exc, DroppedStream):
        return "dropped_stream", None
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth", status
    if isinstance(exc, openai.APIStatusError):
        return ("server_error" if status and status >= 500 else "bad_request"), status
    if isinstance(exc, openai.APIError):
        return "stream_error", None
    return type(exc).__name__, status


def describe_error(exc: BaseException) -> str:
    """What went wrong, never empty."""
    # a connection reset mid-stream raises httpx2.ReadError with an empty message
    return str(exc) or type(exc).__name__


def retry_after_s(exc: BaseException) -> float | None:
    """The server's Retry-After in seconds, where it sent one as a number."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def retry_delay_s(exc: BaseException, attempt: int, policy: RetryPolicy) -> float:
    """How long to wait after failed `attempt` (1-based): the server's Retry-After, else jittered
    exponential backoff capped at `policy.backoff_max_s`."""
    delay = retry_after_s(exc)
    if delay is None:
        delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter spreads retries of concurrent requests
    return delay
