"""Where a trace falls in a sample: one rule for the producer's ``sample_rate`` and ``backfill --sample``.

``trace_fraction(root) < rate`` keeps a trace. The fraction is the first 8 bytes of
BLAKE2b(``root.bytes``, digest size 8) read big-endian, divided by 2**64: the same for one root run
id in every process, on every machine and in every language, so all LLM calls of one agent run are
kept or dropped together wherever they are published or replayed.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

_HASH_RANGE = float(2**64)


def trace_fraction(root_run_id: UUID) -> float:
    """Where a trace falls in [0, 1): the same for one root id everywhere."""
    digest = hashlib.blake2b(root_run_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_RANGE


__all__ = ["trace_fraction"]
