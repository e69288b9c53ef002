"""Capped exponential backoff with jitter."""

from __future__ import annotations

import random

from labelstudio_ingest.consumer.backoff import Backoff


def test_delays_double_up_to_the_cap_within_the_jitter_band() -> None:
    backoff = Backoff(0.5, 8.0, _random=random.Random(1))
    bases = [0.5, 1, 2, 4, 8, 8, 8]
    for base in bases:
        delay = backoff.next_delay()
        assert base / 2 <= delay <= base


def test_reset_starts_over() -> None:
    backoff = Backoff(1.0, 30.0)
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(1.0, 30.0)
    for _ in range(2000):
        assert backoff.next_delay() <= 30.0
