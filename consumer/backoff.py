"""Capped exponential backoff with jitter, for retrying a batch while Label Studio is unavailable."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``initial·2ⁿ`` capped at ``maximum``, each drawn uniformly from [½·d, d] ("equal jitter").

    Jitter keeps replicas that failed together from retrying together; the lower half-bound keeps
    the delay from collapsing to zero.
    """

    initial_s: float
    maximum_s: float
    attempts: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """The wait before the next retry; each call doubles the base until the cap."""
        base = min(self.maximum_s, self.initial_s * (2.0 ** min(self.attempts, 62)))
        self.attempts += 1
        return base / 2 + self._random.uniform(0, base / 2)

    def reset(self) -> None:
        """Start again from the initial delay (after a success)."""
        self.attempts = 0


__all__ = ["Backoff"]
