"""Files only their owner can read, written whole or not at all (export output and export state)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def private_output(out: Path) -> Iterator[IO[str]]:
    """A text stream that becomes ``out`` (mode 0600) when the block ends without an exception.

    It writes to a new file of a random name in ``out``'s directory, created with ``O_CREAT |
    O_EXCL | O_NOFOLLOW`` and mode 0600 (``tempfile.mkstemp``): nothing planted in advance — a
    symlink, a file under a guessable name — is written through or read by anyone else meanwhile.
    The finished file is synced and renamed over ``out``, which replaces a symlink at ``out`` rather
    than following it. On any failure the temporary file is removed and ``out`` is untouched.
    """
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["private_output"]
