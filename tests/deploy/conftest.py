"""Fixtures of the deploy tests that need a running consumer: a rig on a fresh 2-partition topic."""

from __future__ import annotations

import pytest


@pytest.fixture
def rig_partitions() -> int:
    return 2
