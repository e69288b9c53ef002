"""Length-prefixed ``marshal`` messages between the app and its sender process (socket or pipe).

Both ends are the same interpreter (the sender process is started with ``sys.executable``), so
``marshal`` -- fast, C-level, and unable to run code while loading, unlike pickle -- is safe to use.
"""

from __future__ import annotations

import marshal
import os
import select
import struct
import time
from collections.abc import Iterator
from typing import Any

_HEADER = struct.Struct("<I")
_READ_SIZE = 1 << 20


def frame(message: tuple[Any, ...]) -> bytes:
    """One message, ready to write."""
    body = marshal.dumps(message)
    return _HEADER.pack(len(body)) + body


def plain_data(value: Any) -> bool:
    """Whether ``value`` can travel in a frame (strings, numbers, bytes, lists, dicts, ...)."""
    try:
        marshal.dumps(value)
    except ValueError:
        return False
    return True


def write_all(fd: int, data: bytes) -> None:
    """Write every byte on a blocking descriptor."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FrameReader:
    """Reads messages from a descriptor; :meth:`feed` is for callers that do their own ``read``.

    With a ``pause``, iterating waits that many seconds after every read that found data before
    reading again, so that what writers send meanwhile is read in one go; only a reader blocked on
    an empty pipe is woken by a write, so a busy writer then never wakes it (see the sender process).
    """

    def __init__(self, fd: int = -1, *, pause: float = 0.0) -> None:
        self._fd = fd
        self._pause = pause
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        """Add bytes read elsewhere; return the messages they complete."""
        self._buffer += data
        messages = []
        position = 0
        buffer = self._buffer
        with memoryview(buffer) as view:
            while len(buffer) - position >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer, position)
                end = position + _HEADER.size + size
                if end > len(buffer):
                    break
                with view[position + _HEADER.size : end] as body:
                    messages.append(marshal.loads(body))
                position = end
        del buffer[:position]
        return messages

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        """Every message until end of file."""
        if not self._pause:
            while chunk := os.read(self._fd, _READ_SIZE):
                yield from self.feed(chunk)
            return
        os.set_blocking(self._fd, False)
        while True:
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:  # idle: wait for the next write (the only wake-up a writer causes)
                select.select([self._fd], [], [])
                continue
            if not chunk:
                return
            yield from self.feed(chunk)
            time.sleep(self._pause)
