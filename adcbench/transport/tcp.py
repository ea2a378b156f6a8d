"""Two processes (or two hosts) over `torch.distributed`: gloo over TCP, `env://` rendezvous.

The server is rank 0 (it hosts the rendezvous store at MASTER_ADDR:MASTER_PORT), the client is
rank 1, as `torchrun` would number them. Each message travels as one frame: a header of
`HEADER_BYTES` (two int64: the frame kind and the message length) and then the message's exact
bytes as a uint8 tensor. The meter counts len(message) per direction as `Loopback` does; this
transport also counts what it handed to gloo (header included) so the two can be checked
against each other. Control frames (the run's configuration, the server's loss, errors) are
benchmark bookkeeping: counted apart, never in the meter.

Every wait is bounded by `timeout_s`; a peer that dies or goes silent ends the run with a
`TransportError`; a length over `max_message_bytes` is refused before anything is allocated.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import warnings
from typing import Any

import torch
import torch.distributed as dist

from adcbench.errors import WireFormatError

from .base import DIRECTIONS, Meter, Transport, TransportError

CONTROL = "ctl"
KINDS = {name: code for code, name in enumerate((*DIRECTIONS, CONTROL), start=1)}
CODES = {code: name for name, code in KINDS.items()}
HEADER_BYTES = 16  # int64 kind + int64 length
SERVER_RANK, CLIENT_RANK = 0, 1
ROLES = {"server": SERVER_RANK, "client": CLIENT_RANK}
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_MESSAGE_BYTES = 2**30


def _gloo_reason(exc: BaseException) -> str:
    """gloo's messages start with a source path in brackets and go on for lines: keep the cause."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip())
    return text.split(". ")[0].splitlines()[0] if text else type(exc).__name__


class TcpTransport(Transport):
    """One endpoint of a two-rank gloo process group; `open()` joins it, `close()` leaves it."""

    name = "tcp"

    def __init__(
        self,
        role: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        meter: Meter | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r}; valid: {', '.join(ROLES)}")
        if not timeout_s > 0:
            raise TransportError(f"timeout={timeout_s} s is out of range; valid: > 0")
        if max_message_bytes < 1:
            raise TransportError(f"max message bytes={max_message_bytes} is out of range; valid: >= 1")
        super().__init__(meter)
        self.role, self.rank = role, ROLES[role]
        self.peer_role = "client" if role == "server" else "server"
        self.timeout_s, self.max_message_bytes = float(timeout_s), int(max_message_bytes)
        kinds = (*DIRECTIONS, CONTROL)
        self.wire_bytes = dict.fromkeys(kinds, 0)  # sent or received by this endpoint, header included
        self.frames = dict.fromkeys(kinds, 0)
        self._pending: list[tuple[Any, list[torch.Tensor]]] = []  # sends in flight and their buffers
        self._open = False
        self.master = ""
        self.peer_host = ""  # the peer's host name, when it says (the server does, on ready)

    # -- rendezvous ---------------------------------------------------------------------------
    def open(self, connect_timeout_s: float | None = None) -> TcpTransport:
        """Join the group at MASTER_ADDR:MASTER_PORT (env://); waits up to connect_timeout_s for the peer."""
        addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if not addr or not port:
            raise TransportError("MASTER_ADDR and MASTER_PORT must name the server (env:// rendezvous)")
        self.master = f"{addr}:{port}"
        wait = connect_timeout_s or self.timeout_s
        try:
            dist.init_process_group(
                "gloo",
                init_method="env://",
                rank=self.rank,
                world_size=2,
                timeout=datetime.timedelta(seconds=wait),
            )
        except Exception as exc:  # store or gloo errors: name the cause on one line
            raise TransportError(
                f"no {self.peer_role} joined at {self.master} within {wait:g} s ({_gloo_reason(exc)})"
            ) from None
        self._open = True
        return self

    def close(self, flush: bool = True) -> None:
        """Wait for sends still in flight (when flushing), then leave the group; idempotent."""
        if not self._open:
            return
        if flush:
            for work, _ in self._pending:
                try:
                    work.wait(timeout=datetime.timedelta(seconds=self.timeout_s))
                except RuntimeError:
                    break  # the peer is gone: nothing left to flush to
        self._pending.clear()
        self._open = False
        dist.destroy_process_group()

    def __enter__(self) -> TcpTransport:
        return self if self._open else self.open()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(flush=exc_type is None)

    # -- frames -------------------------------------------------------------------------------
    def _wait(self, work: Any, what: str, timeout_s: float | None = None) -> None:
        timeout_s = timeout_s or self.timeout_s
        try:
            work.wait(timeout=datetime.timedelta(seconds=timeout_s))
        except RuntimeError as exc:
            reason = _gloo_reason(exc)
            if "timed out" in reason.lower():
                raise TransportError(f"no {what} from the {self.peer_role} within {timeout_s:g} s") from None
            raise TransportError(f"lost the {self.peer_role} ({reason})") from None

    def _send_frame(self, kind: str, data: bytes) -> None:
        if not self._open:
            raise TransportError("the tcp transport is not open")
        tensors = [torch.tensor([KINDS[kind], len(data)], dtype=torch.int64)]
        if data:  # a view, no copy: gloo only reads it, and `tensors` keeps the bytes alive until sent
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "buffer is not writable": never written
                tensors.append(torch.frombuffer(data, dtype=torch.uint8))
        peer = 1 - self.rank
        for t in tensors:
            try:
                self._pending.append((dist.isend(t, peer), tensors))
            except RuntimeError as exc:
                raise TransportError(f"lost the {self.peer_role} ({_gloo_reason(exc)})") from None
        self.wire_bytes[kind] += sum(t.numel() * t.element_size() for t in tensors)
        self.frames[kind] += 1
        self._pending = [(w, b) for w, b in self._pending if not w.is_completed()]

    def _recv_frame(self, timeout_s: float | None = None) -> tuple[str, bytes]:
        if not self._open:
            raise TransportError("the tcp transport is not open")
        peer = 1 - self.rank
        header = torch.empty(2, dtype=torch.int64)
        self._wait(dist.irecv(header, peer), "message", timeout_s)
        code, n = (int(v) for v in header.tolist())
        kind = CODES.get(code)
        if kind is None:
            raise WireFormatError(f"frame of unknown kind {code} from the {self.peer_role}")
        if not 0 <= n <= self.max_message_bytes:
            raise WireFormatError(
                f"a {n}-byte {kind} message from the {self.peer_role} exceeds the cap of "
                f"{self.max_message_bytes} bytes; refused before allocation"
            )
        payload = torch.empty(n, dtype=torch.uint8)
        if n:
            self._wait(dist.irecv(payload, peer), f"{kind} payload")
        self.wire_bytes[kind] += HEADER_BYTES + n
        self.frames[kind] += 1
        return kind, payload.numpy().tobytes()

    # -- the Transport contract ---------------------------------------------------------------
    def _deliver(self, direction: str, data: bytes) -> None:
        self._send_frame(direction, data)

    def recv(self, direction: str) -> bytes:
        kind, data = self.recv_any()
        if kind == CONTROL:
            self._unexpected_control(data, direction)
        if kind != direction:
            raise WireFormatError(f"expected a {direction} message from the {self.peer_role}, got {kind}")
        return data

    def recv_any(self, timeout_s: float | None = None) -> tuple[str, bytes]:
        """The next frame, whatever its kind (the server does not know what the client sends next).
        A message is metered here, on arrival, so each side's meter counts every message of the run;
        metering parses the bytes, so a malformed message raises WireFormatError at once.
        `timeout_s` overrides the transport's for this wait (the first message, while the peer sets up)."""
        kind, data = self._recv_frame(timeout_s)
        if kind != CONTROL:
            self.meter.count(kind, data)
        return kind, data

    # -- control ------------------------------------------------------------------------------
    def send_control(self, obj: dict[str, Any]) -> None:
        self._send_frame(CONTROL, json.dumps(obj, separators=(",", ":")).encode())

    def recv_control(self, timeout_s: float | None = None) -> dict[str, Any]:
        kind, data = self._recv_frame(timeout_s)
        if kind != CONTROL:
            raise WireFormatError(f"expected a control frame from the {self.peer_role}, got {kind}")
        return self.parse_control(data)

    def parse_control(self, data: bytes) -> dict[str, Any]:
        """A control frame's JSON; an error frame from the peer raises TransportError with its line."""
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WireFormatError(f"malformed control frame from the {self.peer_role}: {exc}") from None
        if not isinstance(obj, dict):
            raise WireFormatError(f"malformed control frame from the {self.peer_role}")
        if obj.get("op") == "error":
            raise TransportError(f"the {self.peer_role} failed: {obj.get('error')}")
        return obj

    def _unexpected_control(self, data: bytes, direction: str) -> None:
        obj = self.parse_control(data)  # raises for the peer's error report
        raise WireFormatError(
            f"expected a {direction} message from the {self.peer_role}, got control {obj.get('op')!r}"
        )

    def report_error(self, message: str) -> None:
        """Tell the peer why this side stops (best effort: it may be the one that is gone)."""
        if not self._open:
            return
        try:
            self.send_control({"op": "error", "error": message})
            work, _ = self._pending[-1]
            work.wait(timeout=datetime.timedelta(seconds=min(self.timeout_s, 5.0)))
        except (RuntimeError, TransportError, IndexError):
            pass

    def describe(self) -> dict[str, Any]:
        data = {d: self.wire_bytes[d] for d in DIRECTIONS}
        return {
            "name": self.name,
            "backend": "gloo",
            "rendezvous": "env://",
            "role": self.role,
            "master": self.master,
            "host": socket.gethostname(),
            "peer_host": self.peer_host,
            "framing_bytes_per_message": HEADER_BYTES,
            "wire_bytes": data,
            "frames": {d: self.frames[d] for d in DIRECTIONS},
            "control_bytes": self.wire_bytes[CONTROL],
            "control_frames": self.frames[CONTROL],
            "timeout_s": self.timeout_s,
            "max_message_bytes": self.max_message_bytes,
        }
