"""Ledger record values: pending, imported and rejected runs, and refusal of anything else."""

from __future__ import annotations

import uuid

import pytest

from labelstudio_ingest.consumer.ledger import LedgerEntry, decode_entry, encode_entry


def test_entries_round_trip() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    for entry in (
        LedgerEntry("pending", (a, b), 3),
        LedgerEntry("imported", (a, b), 3, ((10,), (11, 12))),
        LedgerEntry("rejected", (a,)),
    ):
        assert decode_entry(encode_entry(entry)) == entry


def test_a_run_costs_few_bytes() -> None:
    runs = tuple(uuid.uuid4() for _ in range(1000))
    pending = encode_entry(LedgerEntry("pending", runs, 12345))
    imported = encode_entry(LedgerEntry("imported", runs, 12345, tuple((123456,) for _ in runs)))
    assert len(pending) / len(runs) < 45
    assert len(imported) / len(runs) < 60


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"x",
        b"{}",
        b"[]",
        b'{"state":"done","project_id":1}',
        b'{"state":"pending","run_ids":[]}',
        b'{"state":"imported","project_id":1}',
        b'{"state":"pending","project_id":1,"run_ids":["not-a-uuid"]}',
    ],
)
def test_foreign_values_are_refused(value: bytes | None) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json, uuid and our own errors are all ValueError
        decode_entry(value)
