"""Which Label Studio failures are retried, which blame the record, and which may have applied."""

from __future__ import annotations

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from labelstudio_ingest.consumer.errors import Verdict, classify, describe, error_kind, maybe_applied

REQUEST = httpx.Request("POST", "http://ls/api/projects/1/import")


@pytest.mark.parametrize(
    ("exc", "verdict", "applied"),
    [
        (httpx.ConnectError("refused", request=REQUEST), Verdict.TRANSIENT, False),
        (httpx.ConnectTimeout("slow", request=REQUEST), Verdict.TRANSIENT, False),
        (httpx.ReadTimeout("slow", request=REQUEST), Verdict.TRANSIENT, True),
        (httpx.RemoteProtocolError("cut", request=REQUEST), Verdict.TRANSIENT, True),
        (ApiError(status_code=500, body="boom"), Verdict.TRANSIENT, True),
        (ApiError(status_code=503, body="down"), Verdict.TRANSIENT, True),
        (ApiError(status_code=429, body="slow down"), Verdict.TRANSIENT, True),
        (ApiError(status_code=408, body="timeout"), Verdict.TRANSIENT, True),
        (ApiError(status_code=409, body="conflict"), Verdict.TRANSIENT, True),
        (ApiError(status_code=401, body="who"), Verdict.TRANSIENT, False),
        (ApiError(status_code=403, body="no"), Verdict.TRANSIENT, False),
        (ApiError(status_code=404, body="gone"), Verdict.NOT_FOUND, False),
        (ApiError(status_code=400, body={"validation_errors": "bad"}), Verdict.REJECTED, False),
        (ApiError(status_code=413, body="too big"), Verdict.REJECTED, False),
        (ApiError(status_code=200, body="not json"), Verdict.TRANSIENT, True),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), Verdict.REJECTED, False),
        (RuntimeError("who knows"), Verdict.TRANSIENT, True),
    ],
)
def test_classification(exc: Exception, verdict: Verdict, applied: bool) -> None:
    assert classify(exc) is verdict
    assert maybe_applied(exc) is applied


def test_kinds_are_short_labels() -> None:
    assert error_kind(httpx.ConnectError("x", request=REQUEST)) == "connect"
    assert error_kind(httpx.ReadTimeout("x", request=REQUEST)) == "timeout"
    assert error_kind(ApiError(status_code=502, body="")) == "http_502"


def test_descriptions_are_one_short_line() -> None:
    text = describe(ApiError(status_code=404, body="<html>\n" + "x" * 5000), limit=100)
    assert "\n" not in text
    assert len(text) <= 100
    assert text.startswith("HTTP 404")
    assert describe(ApiError(status_code=400, body={"validation_errors": {"a": ["b"]}})) == (
        "HTTP 400: {'a': ['b']}"
    )
