"""Sampling decides per trace, the same way in every process, and always keeps what was asked for."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from labelstudio_ingest.producer import settings as env
from labelstudio_ingest.producer.sampling import SAMPLE_METADATA_KEY, Sampler, check_rate, trace_fraction

ROOT = UUID("12345678-1234-5678-1234-567812345678")


def test_a_traces_fraction_is_a_fixed_function_of_its_root_id() -> None:
    # Fixed values: no per-process salt (Python's hash() would differ between processes and runs).
    assert trace_fraction(UUID(int=0)) == 0.32154303974819404
    assert trace_fraction(ROOT) == 0.481771819463181


def test_the_share_of_traces_kept_follows_the_rate() -> None:
    sampler = Sampler.of(0.25)
    kept = sum(sampler.keeps(uuid4(), None, None) for _ in range(20_000))
    assert 4_500 < kept < 5_500


def test_a_traces_runs_are_kept_or_dropped_together() -> None:
    sampler = Sampler.of(0.5)
    decisions = {sampler.keeps(ROOT, [f"step-{i}"], {"i": i}) for i in range(50)}
    assert len(decisions) == 1


def test_rate_one_keeps_all_and_rate_zero_drops_all() -> None:
    assert all(Sampler.of(1.0).keeps(uuid4(), None, None) for _ in range(100))
    assert not any(Sampler.of(0.0).keeps(uuid4(), None, None) for _ in range(100))


def test_keep_tags_keep_a_run_whatever_the_rate() -> None:
    sampler = Sampler.of(0.0, keep_tags=["review"])
    assert sampler.keeps(ROOT, ["agent", "review"], None)
    assert not sampler.keeps(ROOT, ["agent"], None)


def test_the_metadata_override_wins_over_rate_and_tags() -> None:
    keep_nothing = Sampler.of(0.0, keep_tags=["review"])
    keep_all = Sampler.of(1.0)
    assert keep_nothing.keeps(ROOT, None, {SAMPLE_METADATA_KEY: True})
    assert not keep_all.keeps(ROOT, None, {SAMPLE_METADATA_KEY: False})
    assert not keep_nothing.keeps(ROOT, ["review"], {SAMPLE_METADATA_KEY: False})
    assert not keep_nothing.keeps(ROOT, None, {SAMPLE_METADATA_KEY: "yes"})  # only booleans count


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), float("inf")])
def test_rates_outside_zero_to_one_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        check_rate(rate)


def test_sampling_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_SAMPLE_RATE", "0.1")
    monkeypatch.setenv("INGEST_SAMPLE_KEEP_TAGS", "review, vip,")
    monkeypatch.setenv("INGEST_PRODUCER_ENABLED", "false")
    assert env.resolve_sample_rate(None) == 0.1
    assert env.resolve_sample_rate(0.5) == 0.5
    assert env.resolve_keep_tags(None) == {"review", "vip"}
    assert env.resolve_keep_tags(["x"]) == {"x"}
    assert env.resolve_enabled(None) is False
    assert env.resolve_enabled(True) is True
    monkeypatch.setenv("INGEST_SAMPLE_RATE", "half")
    with pytest.raises(ValueError, match="INGEST_SAMPLE_RATE"):
        env.resolve_sample_rate(None)
    monkeypatch.setenv("INGEST_PRODUCER_ENABLED", "maybe")
    with pytest.raises(ValueError, match="INGEST_PRODUCER_ENABLED"):
        env.resolve_enabled(None)


def test_defaults_keep_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INGEST_SAMPLE_RATE", "INGEST_SAMPLE_KEEP_TAGS", "INGEST_PRODUCER_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    assert (env.resolve_sample_rate(None), env.resolve_keep_tags(None), env.resolve_enabled(None)) == (
        1.0,
        frozenset(),
        True,
    )
