"""In-process transport: both roles in one process, a FIFO of bytes per direction."""

from __future__ import annotations

import collections

from .base import Meter, Transport


class Loopback(Transport):
    """In-process: a FIFO per direction. The receiver gets the sender's `bytes` object itself:
    it is immutable, so sharing it is safe, and copying a ~19 MB message costs more than a meter."""

    name = "loopback"

    def __init__(self, meter: Meter | None = None) -> None:
        super().__init__(meter)
        self._queues: dict[str, collections.deque[bytes]] = collections.defaultdict(collections.deque)

    def _deliver(self, direction: str, data: bytes) -> None:
        self._queues[direction].append(data)

    def recv(self, direction: str) -> bytes:
        if not self._queues[direction]:
            raise RuntimeError(f"no {direction} message in flight")
        return self._queues[direction].popleft()
