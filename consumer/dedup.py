"""What one input partition remembers about run_ids: imported ones (bounded) and uncertain ones.

A run_id is kept as its 16 UUID bytes. Imported run_ids live in a short chain of sets
("segments"); a new segment starts when the newest one holds ``max_run_ids / SEGMENTS`` run_ids
or spans ``horizon / SEGMENTS``, and the oldest segment is dropped whole when the partition
remembers more than ``max_run_ids`` or when even its newest run_id is older than the horizon. So
every run_id is remembered for at least the horizon unless more than ``max_run_ids`` newer ones
push it out, memory stays within ``(1 + 1/SEGMENTS) · max_run_ids`` run_ids, and no per-entry
timestamp is stored. docs/EXACTLY_ONCE.md gives the measured bytes per run_id.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SEGMENTS = 8
"""How many segments cover the horizon (and the count bound)."""


@dataclass(slots=True)
class _Segment:
    runs: set[bytes] = field(default_factory=set)
    first_ms: int = 0
    last_ms: int = 0


class PartitionMemory:
    """Dedup state of one input partition, rebuilt from its ledger partition.

    ``position`` is the next ledger offset not yet applied: a later restore resumes there.
    """

    def __init__(self, *, horizon_ms: int, max_run_ids: int) -> None:
        self._horizon_ms = horizon_ms
        self._max = max_run_ids
        self._segment_cap = max(1, max_run_ids // SEGMENTS)
        self._segment_span_ms = max(1, horizon_ms // SEGMENTS)
        self._segments: deque[_Segment] = deque()
        self._count = 0
        self.pending: dict[bytes, int] = {}
        """run_id → project id: a ``pending`` marker is the run's last ledger state (uncertain)."""
        self.pending_ms: dict[bytes, int] = {}
        """run_id → when its last ``pending`` marker was written (epoch ms): the import it announced
        was sent no earlier, so Label Studio is not asked about the run before that plus the import
        timeout (docs/EXACTLY_ONCE.md)."""
        self.position = 0

    def __len__(self) -> int:
        """Imported run_ids remembered (pending ones not counted)."""
        return self._count

    def is_imported(self, run: bytes) -> bool:
        """Whether the run_id is remembered as imported."""
        return any(run in segment.runs for segment in reversed(self._segments))

    def pending_project(self, run: bytes) -> int | None:
        """The project of the run's pending marker, if its last known state is pending."""
        return self.pending.get(run)

    def pending_since_ms(self, run: bytes) -> int | None:
        """When the run's pending marker was written (epoch ms), if the run is uncertain."""
        return self.pending_ms.get(run) if run in self.pending else None

    def imported(self, run: bytes, at_ms: int) -> None:
        """The run's tasks are in Label Studio (ledger record time ``at_ms``)."""
        self.not_pending(run)
        if self.is_imported(run):
            return
        segment = self._segments[-1] if self._segments else None
        if (
            segment is None
            or len(segment.runs) >= self._segment_cap
            or at_ms - segment.first_ms >= self._segment_span_ms
        ):
            segment = _Segment(first_ms=at_ms, last_ms=at_ms)
            self._segments.append(segment)
        segment.runs.add(run)
        segment.last_ms = max(segment.last_ms, at_ms)
        self._count += 1
        self._evict(at_ms)

    def pending_marker(self, run: bytes, project_id: int, at_ms: int) -> None:
        """A pending marker was written for the run at ``at_ms``: last one wins, so it is uncertain again."""
        self._discard(run)
        self.pending[run] = project_id
        self.pending_ms[run] = at_ms

    def not_pending(self, run: bytes) -> None:
        """The run is no longer uncertain (imported, rejected, or its import never left)."""
        self.pending.pop(run, None)
        self.pending_ms.pop(run, None)

    def forget(self, run: bytes) -> None:
        """A tombstone: the ledger no longer knows the run."""
        self._discard(run)
        self.not_pending(run)

    def expire(self, now_ms: int) -> None:
        """Drop segments whose newest run_id is older than the horizon."""
        self._evict(now_ms)

    def _discard(self, run: bytes) -> None:
        for segment in self._segments:
            if run in segment.runs:
                segment.runs.discard(run)
                self._count -= 1

    def _evict(self, now_ms: int) -> None:
        while self._segments and (
            self._count - len(self._segments[0].runs) >= self._max
            or now_ms - self._segments[0].last_ms > self._horizon_ms
        ):
            self._count -= len(self._segments.popleft().runs)


__all__ = ["SEGMENTS", "PartitionMemory"]
