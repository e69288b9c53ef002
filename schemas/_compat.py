"""What Python 3.10 lacks and the contract and the producer use (they run on 3.10 to 3.13)."""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
    from typing import Self
else:  # pragma: no cover - exercised by the 3.10 leg of `make test-matrix`
    from typing_extensions import Self  # a dependency of pydantic

    class StrEnum(str, Enum):
        """``enum.StrEnum`` of Python 3.11: members are strings and print as their value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


__all__ = ["Self", "StrEnum"]
