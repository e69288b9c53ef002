"""The frames between the app and its sender process, and the counters built from the sender's reports."""

from __future__ import annotations

import os
import threading

import pytest

from labelstudio_ingest.producer.metrics import DropReason
from labelstudio_ingest.producer.pipe import FrameReader, frame, write_all
from labelstudio_ingest.producer.process_transport import SenderCounters

MESSAGES = [
    ("init", {"acks": "all", "bootstrap_servers": ["a:1", "b:2"]}, 10, 1 << 20, 5.0, {"kafka": 30}),
    ("r", "topic", b"key", b"x" * 70_000, [("kind", b"prompt"), ("schema", b"1")]),
    ("f",),
    ("c", None),
    ("c", 1.5),
]


def test_messages_survive_any_split_of_the_stream() -> None:
    stream = b"".join(frame(m) for m in MESSAGES)
    for cut in (1, 3, 4, 5, 100, 4096, 70_001, len(stream) - 1):
        reader = FrameReader()
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert got == MESSAGES
    reader = FrameReader()
    assert [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])] == MESSAGES


@pytest.mark.parametrize("pause", [0.0, 0.005])
def test_a_reader_iterates_a_pipe_until_end_of_file(pause: float) -> None:
    read_end, write_end = os.pipe()

    def write() -> None:
        for message in MESSAGES * 20:  # several MiB: more than a pipe holds at once
            write_all(write_end, frame(message))
        os.close(write_end)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert list(FrameReader(read_end, pause=pause)) == MESSAGES * 20
    finally:
        writer.join()
        os.close(read_end)


def test_counters_add_the_live_senders_report_to_those_that_exited() -> None:
    counters = SenderCounters()
    for _ in range(10):
        counters.submitted("t")
    counters.rejected("t", DropReason.OVERSIZED)  # dropped by the handler, never submitted
    counters.report({"t": (4, 1, {"buffer_full": 1})}, connection_errors=2)
    assert (counters.finished, counters.outcomes("t")) == (6, 6)
    stats = counters.snapshot("t")
    assert (stats.published, stats.failed, stats.dropped, stats.buffered) == (4, 1, 2, 4)

    # the sender dies having been given 8 events: 6 had an outcome, 2 are lost with it
    counters.retire({"t": 8 - counters.outcomes("t")}, DropReason.SENDER_EXITED)
    assert counters.outcomes("t") == 0
    counters.report({"t": (2, 0, {})}, connection_errors=1)  # the new sender delivers the last 2
    stats = counters.snapshot("t")
    assert (stats.published, stats.failed, stats.buffered, stats.connection_errors) == (6, 1, 0, 3)
    assert stats.dropped_by_reason == {"oversized": 1, "buffer_full": 1, "sender_exited": 2}
    assert counters.finished == 10
