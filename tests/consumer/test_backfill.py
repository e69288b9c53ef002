"""The backfill's pure selection logic: time window, event filters, sampling, names, start offsets."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from types import SimpleNamespace

import pytest

from labelstudio_ingest.consumer.backfill import (
    Selection,
    Tally,
    breakdown,
    check_name,
    default_name,
    names_for,
    parse_pair,
    parse_rate,
    sampled,
    start_offset,
    trace_key,
)
from labelstudio_ingest.schemas import ChatEvent, PromptEvent, Target
from labelstudio_ingest.schemas.sampling import trace_fraction
from tests.consumer.runner import chat_event, prompt_event


def event(**changes: object) -> PromptEvent:
    base = prompt_event(target=Target(project_name="LangChain-2026-11-20")).model_dump(mode="json")
    return PromptEvent.model_validate({**base, **changes})


def test_an_empty_selection_takes_every_run_and_every_time() -> None:
    assert Selection().matches(event())
    assert Selection().in_window(None)
    assert Selection().in_window(0)


def test_the_window_is_since_inclusive_until_exclusive() -> None:
    window = Selection(since_ms=1_000, until_ms=2_000)
    assert [window.in_window(t) for t in (999, 1_000, 1_999, 2_000)] == [False, True, True, False]
    assert not window.in_window(None)
    assert not window.in_window(-1)


def test_services_models_and_kinds_are_alternatives() -> None:
    by_service = Selection(services=frozenset({"search", "chat"}))
    assert by_service.matches(event(source={"service": "search"}))
    assert not by_service.matches(event(source={"service": "billing"}))
    assert not by_service.matches(event())
    assert Selection(models=frozenset({"gpt", "fake-llm"})).matches(event())
    assert not Selection(models=frozenset({"gpt"})).matches(event())
    chat: ChatEvent = chat_event(target=Target(project_id=3))
    assert Selection(kinds=frozenset({"chat"})).matches(chat)
    assert not Selection(kinds=frozenset({"chat"})).matches(event())


def test_tags_and_metadata_must_all_be_present() -> None:
    tagged = event(tags=["review", "beta"], metadata={"team": "search", "tries": 3, "ok": True})
    assert Selection(tags=frozenset({"review"})).matches(tagged)
    assert Selection(tags=frozenset({"review", "beta"})).matches(tagged)
    assert not Selection(tags=frozenset({"review", "gold"})).matches(tagged)
    assert Selection(metadata=(("team", "search"), ("tries", "3"), ("ok", "true"))).matches(tagged)
    assert not Selection(metadata=(("team", "ads"),)).matches(tagged)
    assert not Selection(metadata=(("missing", ""),)).matches(tagged)


def test_errors_only_takes_failed_runs() -> None:
    failed = event(error={"type": "Timeout", "message": "slow"}, generations=[])
    assert Selection(errors_only=True).matches(failed)
    assert not Selection(errors_only=True).matches(event())


def test_the_original_project_is_an_id_or_a_title_pattern() -> None:
    by_id = event(target={"project_id": 42})
    assert Selection(from_projects=("42",)).matches(by_id)
    assert not Selection(from_projects=("43",)).matches(by_id)
    assert Selection(from_projects=("LangChain-2026-11-*",)).matches(event())
    assert Selection(from_projects=("LangChain-2026-11-20",)).matches(event())
    assert not Selection(from_projects=("Other",)).matches(event())
    assert not Selection(from_projects=("LangChain-*",)).matches(by_id)


def test_the_sample_rule_is_the_producers_documented_blake2b_formula() -> None:
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    expected = int.from_bytes(hashlib.blake2b(key.bytes, digest_size=8).digest(), "big") / 2**64
    assert trace_fraction(key) == expected
    assert sampled(key, expected + 1e-12)
    assert not sampled(key, expected)
    assert sampled(key, 1.0)
    assert not sampled(key, 0.0)


def test_a_sample_keeps_about_its_share_and_the_same_runs_every_time() -> None:
    keys = [uuid.UUID(int=i * 7919 + 1) for i in range(4000)]
    kept = [k for k in keys if sampled(k, 0.25)]
    assert 800 < len(kept) < 1200
    assert kept == [k for k in keys if sampled(k, 0.25)]


def test_a_run_is_sampled_by_its_traces_root_where_the_event_carries_one() -> None:
    root = uuid.uuid4()
    run = event()
    assert trace_key(run) == run.run_id
    with_trace = SimpleNamespace(run_id=uuid.uuid4(), trace=SimpleNamespace(root_run_id=root))
    assert trace_key(with_trace) == root  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "rate"), [("0.1", 0.1), ("10%", 0.1), ("1", 1.0), (" 50% ", 0.5)])
def test_sample_shares_read_as_fractions_or_percentages(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["0", "-0.1", "1.5", "abc", "200%", "nan"])
def test_sample_shares_outside_zero_to_one_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--sample"):
        parse_rate(text)


def test_metadata_pairs_need_a_key_and_an_equals_sign() -> None:
    assert parse_pair("team=search=x") == ("team", "search=x")
    assert parse_pair("empty=") == ("empty", "")
    for bad in ("team", "=x"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_pair(bad)


def test_the_default_name_is_stable_for_the_same_command_and_differs_otherwise() -> None:
    selection = Selection(services=frozenset({"a", "b"}), since_ms=1)
    same = Selection(services=frozenset({"b", "a"}), since_ms=999)  # --since 7d resolves differently
    assert default_name(7, selection, ("7d", None)) == default_name(7, same, ("7d", None))
    assert default_name(7, selection, ("7d", None)) != default_name(7, selection, ("8d", None))
    assert default_name(7, selection, ("7d", None)) != default_name(8, selection, ("7d", None))
    assert default_name(7, selection, ("7d", None)).startswith("p7-")


def test_names_are_made_safe_for_topics_and_groups() -> None:
    assert check_name(" review: week 47! ") == "review-week-47"
    with pytest.raises(ValueError, match="no letters"):
        check_name("!!!")


def test_the_ledger_is_per_target_and_the_group_per_backfill() -> None:
    names = names_for(name="week47", project_id=12, topic="llm.interactions", group_id="labelstudio-ingest")
    assert names.group_id == "labelstudio-ingest.backfill.week47"
    assert names.ledger_topic == "llm.interactions.backfill-p12.ledger"
    assert names.dlq_topic == "llm.interactions.backfill-p12.dlq"
    assert names.ledger_topic != "llm.interactions.ledger"


def test_the_time_index_answer_is_used_only_when_it_can_be_right() -> None:
    assert start_offset(5, 100, (40, 2_000), since_ms=1_000) == 40
    assert start_offset(5, 100, None, since_ms=1_000) == 100  # nothing that new: nothing to read
    assert start_offset(5, 100, (40, 2_000), since_ms=None) == 5
    # tansu 0.6 answers offset 0 with a timestamp of -1 (or one before the time asked)
    assert start_offset(5, 100, (0, -1), since_ms=1_000) == 5
    assert start_offset(5, 100, (40, 500), since_ms=1_000) == 5
    assert start_offset(5, 100, (400, 2_000), since_ms=1_000) == 5


def test_progress_lines_carry_rate_and_eta_and_the_summary_the_counts() -> None:
    tally = Tally(total=1000, read=250, imported=200, present=10, dead_lettered=1)
    tally.add_match(event(source={"service": "search"}))
    line = tally.progress(elapsed_s=5.0)
    assert (line["rate_per_s"], line["eta_s"]) == (50.0, 15.0)
    assert Tally(total=10).progress(0.0)["eta_s"] is None
    assert tally.summary() == {
        "read": 250,
        "invalid": 0,
        "matched": 1,
        "imported": 200,
        "already_present": 10,
        "dead_lettered": 1,
    }


def test_the_dry_run_table_is_largest_first() -> None:
    counts = Counter({("prompt", "a"): 2, ("chat", "b"): 5, ("chat", "a"): 2})
    assert [(r["kind"], r["service"], r["runs"]) for r in breakdown(counts)] == [
        ("chat", "b", 5),
        ("chat", "a", 2),
        ("prompt", "a", 2),
    ]
