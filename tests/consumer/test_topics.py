"""Ledger topic sizing and the retention check, as pure functions."""

from labelstudio_ingest.consumer.ledger import bytes_per_run
from labelstudio_ingest.consumer.topics import ledger_topic_configs, retention_shortfalls

HORIZON_MS = 30 * 86_400_000


def test_retention_bytes_allow_a_run_of_256_tasks_kilobytes_not_200_bytes() -> None:
    configs = ledger_topic_configs(HORIZON_MS, 1_000_000, max_tasks_per_run=256)
    assert bytes_per_run(256) > 2_900  # the imported record alone names 256 task ids
    assert int(configs["retention.bytes"]) == 1_000_000 * bytes_per_run(256)
    assert int(configs["segment.bytes"]) <= 1 << 30


def test_unreported_and_unbounded_retention_are_not_shortfalls() -> None:
    wanted = ledger_topic_configs(HORIZON_MS, 1_000)
    assert retention_shortfalls({}, wanted) == []
    assert retention_shortfalls({"retention.ms": "-1", "retention.bytes": "-1"}, wanted) == []
    assert retention_shortfalls({"retention.ms": "1000"}, wanted) == [
        f"retention.ms=1000 is below the {HORIZON_MS} the dedup settings need"
    ]
