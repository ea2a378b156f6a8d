"""Transports move message bytes between client and server and meter them per direction.

Methods never see a transport. The training loop only calls `send(direction, data)` and
`recv(direction)`, so a transport that puts the two roles in two processes (or hosts) slots in
without touching methods or the loop's logic. `Loopback` keeps both roles in one process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from adcbench.errors import AdcbenchError
from adcbench.wire import BREAKDOWN_KEYS, breakdown

DIRECTIONS = ("fwd", "bwd", "eval_fwd", "eval_bwd")


class TransportError(AdcbenchError):
    """The peer is gone, silent past the timeout, or reported an error of its own."""


# The meter walks the headers only: the receiver checks the CRC once, when it decodes.
_headers_breakdown = functools.partial(breakdown, check_crc=False)


class Meter:
    """Counts len(bytes) of every message per direction, with a breakdown by category."""

    def __init__(self, describe: Callable[[bytes], dict[str, int]] = _headers_breakdown) -> None:
        self.describe = describe
        self.bytes = dict.fromkeys(DIRECTIONS, 0)
        self.messages = dict.fromkeys(DIRECTIONS, 0)
        self.parts = {d: dict.fromkeys(BREAKDOWN_KEYS, 0) for d in DIRECTIONS}
        self.last = dict.fromkeys(DIRECTIONS, 0)
        # Seconds the roles waited on the network rather than computing (0 in one process); the
        # virtual clock of a link model subtracts it from the wall time to get the compute time.
        self.network_s = 0.0

    def count(self, direction: str, data: bytes) -> None:
        n = len(data)
        self.bytes[direction] += n
        self.messages[direction] += 1
        self.last[direction] = n
        for key, value in self.describe(data).items():
            self.parts[direction][key] = self.parts[direction].get(key, 0) + value

    @property
    def train_total(self) -> int:
        return self.bytes["fwd"] + self.bytes["bwd"]

    def snapshot(self) -> dict[str, Any]:
        """Cumulative bytes and messages of every direction: what a link model replays."""
        return {"bytes": dict(self.bytes), "messages": dict(self.messages), "network_s": round(self.network_s, 6)}


class Transport:
    """Base class: `send` meters and delivers; `recv` returns the next message of a direction."""

    name = "abstract"

    def __init__(self, meter: Meter | None = None) -> None:
        self.meter = meter or Meter()

    def describe(self) -> dict[str, Any]:
        """What the run record says about how the bytes travelled."""
        return {"name": self.name}

    def send(self, direction: str, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError("only bytes cross the wire")
        self.meter.count(direction, data)
        self._deliver(direction, data)

    def _deliver(self, direction: str, data: bytes) -> None:
        raise NotImplementedError  # abstract

    def recv(self, direction: str) -> bytes:
        raise NotImplementedError  # abstract
