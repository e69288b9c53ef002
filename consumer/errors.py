"""How the consumer tells Label Studio's failures apart: retry later, or blame the record."""

from __future__ import annotations

from enum import StrEnum

import httpx
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.parse_error import ParsingError

_RETRY_STATUSES = frozenset({408, 409, 425, 429})
_AUTH_STATUSES = frozenset({401, 403})
_NOT_FOUND = 404
_GATEWAY_STATUSES = frozenset({502, 503, 504})


class Verdict(StrEnum):
    """What a failed Label Studio request means for the records in it."""

    TRANSIENT = "transient"
    """Label Studio is unavailable (down, 5xx, timeout, 429, auth): pause, back off, retry."""
    NOT_FOUND = "not_found"
    """The project is gone (404): re-resolve the target."""
    REJECTED = "rejected"
    """A 4xx about the request's content (or content that cannot be encoded): isolate the bad
    record and dead-letter it."""


class LabelStudioUnavailable(Exception):
    """Label Studio could not do what was asked; retry the batch later.

    ``maybe_applied`` is False only when the request certainly never reached the server
    (connection refused, connect timeout); otherwise an import may have been applied.
    """

    def __init__(
        self, kind: str, cause: BaseException, *, maybe_applied: bool, suspect: bool = False
    ) -> None:
        super().__init__(f"Label Studio unavailable ({kind}): {describe(cause)}")
        self.kind = kind
        self.cause = cause
        self.maybe_applied = maybe_applied
        self.suspect = suspect
        """An import got a 5xx answer or timed out: the request itself may be what breaks Label
        Studio (see :func:`suspect`); repeated, the batch is isolated rather than retried as is."""


class Rebalanced(Exception):
    """The group changed the assignment while a batch was in flight; the batch is abandoned.

    Raised before any Label Studio request of an abandoned batch is sent, so a member that lost
    its partitions never imports after the new owner may have started.
    """


class UncertainTooRecent(Exception):
    """Some uncertain runs of the batch had their ``pending`` marker written too recently to ask
    Label Studio about them: an import sent then (e.g. by a member just killed) may still be
    applied. Wait ``wait_s`` (partitions paused, membership kept) and process the batch again.

    Not an outage: nothing failed, nothing was sent for the batch.
    """

    def __init__(self, wait_s: float, runs: int) -> None:
        super().__init__(f"{runs} uncertain runs too recent to ask Label Studio; waiting {wait_s:.1f} s")
        self.wait_s = wait_s
        self.runs = runs


class ProjectGone(Exception):
    """Label Studio answered 404 for a project the resolver had given."""

    def __init__(self, project_id: int) -> None:
        super().__init__(f"project {project_id} no longer exists")
        self.project_id = project_id


def classify(exc: BaseException) -> Verdict:
    """The verdict on an exception raised by an SDK call."""
    if isinstance(exc, ApiError):
        status = exc.status_code
        if status is None or status < 400 or status >= 500:
            return Verdict.TRANSIENT
        if status in _RETRY_STATUSES or status in _AUTH_STATUSES:
            return Verdict.TRANSIENT
        if status == _NOT_FOUND:
            return Verdict.NOT_FOUND
        return Verdict.REJECTED
    if isinstance(exc, httpx.TransportError | ParsingError):
        return Verdict.TRANSIENT
    if isinstance(exc, ValueError | TypeError):  # the request could not even be encoded
        return Verdict.REJECTED
    return Verdict.TRANSIENT


def error_kind(exc: BaseException) -> str:
    """A short label for metrics: ``connect``, ``timeout``, ``transport``, ``http_<status>``, ..."""
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        return "transport"
    if isinstance(exc, ApiError | ParsingError):
        return f"http_{exc.status_code}" if exc.status_code is not None else "http_unknown"
    return type(exc).__name__


def maybe_applied(exc: BaseException) -> bool:
    """Whether a failed POST may still have been applied by the server."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return False
    if isinstance(exc, ApiError) and exc.status_code in _AUTH_STATUSES:
        return False
    return classify(exc) is Verdict.TRANSIENT


def suspect(exc: BaseException) -> bool:
    """Whether a failed import may be the fault of what it carried rather than of Label Studio: an
    HTTP 5xx answer (a task that trips a server bug, a body too large for it: HTTP 500 "You cannot
    access body after reading from request's data stream") or a request that was sent and never
    answered in time. Refused connections and 429/408/auth answers never are."""
    if isinstance(exc, ApiError | ParsingError):
        return exc.status_code is not None and exc.status_code >= 500
    return isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout | httpx.RemoteProtocolError)


def finished(exc: BaseException) -> bool:
    """Whether Label Studio itself answered, so the request is over and asking about its runs now
    is safe: a 5xx other than a gateway's 502/503/504. A timeout or a dropped connection may leave
    the import running on the server, and a gateway may answer while Label Studio still works."""
    return (
        isinstance(exc, ApiError)
        and exc.status_code is not None
        and exc.status_code >= 500
        and (exc.status_code not in _GATEWAY_STATUSES)
    )


def unavailable(
    exc: BaseException, *, applied: bool | None = None, is_suspect: bool = False
) -> LabelStudioUnavailable:
    """Wrap a transient failure for the retry loop (``applied=False``: known not applied)."""
    may = maybe_applied(exc) if applied is None else applied
    return LabelStudioUnavailable(error_kind(exc), exc, maybe_applied=may, suspect=is_suspect)


def describe(exc: BaseException, limit: int = 500) -> str:
    """A one-line description of an exception, bodies cut to ``limit`` characters."""
    if isinstance(exc, ApiError | ParsingError):
        body = exc.body
        if isinstance(body, dict):
            body = body.get("validation_errors") or body.get("detail") or body
        text = f"HTTP {exc.status_code}: {body}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "LabelStudioUnavailable",
    "ProjectGone",
    "Rebalanced",
    "UncertainTooRecent",
    "Verdict",
    "classify",
    "describe",
    "error_kind",
    "finished",
    "maybe_applied",
    "suspect",
    "unavailable",
]
