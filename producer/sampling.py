"""Which runs are published: a share of whole traces, plus every failure and every run asked for.

The decision is made once per run, at its start, from the trace's root run id (see ``traces.py``):
a hash of the root id compared with ``sample_rate``. Every LLM call of one agent run has the same
root, so they are kept or dropped together, in every process and on every machine (the hash is
BLAKE2b, not Python's per-process ``hash``). A run is kept regardless of the rate when

- its metadata says so: ``metadata={"labelstudio_sample": True}`` (``False`` drops it, whatever
  the rate and tags say; LangChain passes a call's metadata down to every run inside it),
- one of its tags is in ``keep_tags`` (e.g. ``review``),
- it fails: a failed run is always published, whatever the rest says.

Pure logic: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from labelstudio_ingest.schemas.sampling import trace_fraction

SAMPLE_METADATA_KEY = "labelstudio_sample"
"""The metadata key of the per-call override: ``True`` keeps the run, ``False`` drops it."""


def check_rate(rate: float) -> float:
    """``rate`` as a float in [0, 1].

    Raises:
        ValueError: for anything else.
    """
    value = float(rate)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"sample_rate must be between 0 and 1, not {rate!r}")
    return value


@dataclass(frozen=True, slots=True)
class Sampler:
    """Decides at a run's start whether it is published (a failed run always is: see the module)."""

    rate: float = 1.0
    """The share of traces kept, from 0 to 1."""
    keep_tags: frozenset[str] = frozenset()
    """Runs with any of these tags are always kept."""

    @classmethod
    def of(cls, rate: float, keep_tags: Iterable[str] = ()) -> Sampler:
        """A sampler with a checked rate."""
        return cls(rate=check_rate(rate), keep_tags=frozenset(str(tag) for tag in keep_tags))

    def keeps(
        self, root_run_id: UUID, tags: Iterable[str] | None, metadata: Mapping[str, Any] | None
    ) -> bool:
        """Whether a run of the trace rooted at ``root_run_id``, with these tags and metadata, is kept."""
        if metadata:
            override = metadata.get(SAMPLE_METADATA_KEY)
            if override is True or override is False:
                return override
        if self.rate >= 1.0:
            return True
        if self.keep_tags and tags and not self.keep_tags.isdisjoint(tags):
            return True
        if self.rate <= 0.0:
            return False
        return trace_fraction(root_run_id) < self.rate
