"""Hostile and dying peers for tests/test_transport.py: `python tests/_peers.py ROLE PORT...`.

Each port is one scenario, in the order the test drives them on its side; the peer imports only
torch and the transport/wire layers (no model, no data), so it starts fast. 127.0.0.1 only."""

from __future__ import annotations

import os
import signal
import sys
import time

import torch
import torch.distributed as dist

from adcbench.errors import AdcbenchError
from adcbench.transport.tcp import KINDS, TcpTransport
from adcbench.wire import Category, Field, Message

CONFIG = {"method": "none", "task": "digits", "max_steps": 3, "batch_size": 16, "eval_every": 1, "threads": 1}


def _open(role: str, port: int, timeout: float = 20.0) -> TcpTransport:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    return TcpTransport(role, timeout_s=timeout).open(60.0)


def _huge_header(t: TcpTransport, kind: str) -> None:
    """A header announcing a terabyte and no payload: the receiver must refuse before allocating."""
    dist.isend(torch.tensor([KINDS[kind], 10**12], dtype=torch.int64), 1 - t.rank).wait()


def _expect_error(t: TcpTransport) -> None:
    try:
        t.recv_control()
    except AdcbenchError as exc:
        print(f"peer saw: {exc}", flush=True)
    t.close(flush=False)


def client(ports: list[int]) -> None:
    """Against the test's in-process server: malformed fwd, oversize fwd, then die after `ready`."""
    for scenario, port in zip(("malformed", "oversize", "die"), ports):
        t = _open("client", port)
        t.send_control({"op": "config", "config": CONFIG})
        t.recv_control()  # ready
        if scenario == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if scenario == "malformed":
            t._send_frame("fwd", b"ADCW this is not a message")
        else:
            _huge_header(t, "fwd")
        _expect_error(t)


def _answer_step(t: TcpTransport) -> None:
    """A fake `none` server: zero gradient of the forward's shape, loss 1."""
    x = Message.decode(t.recv("fwd"))["1.x"]
    assert isinstance(x, torch.Tensor)
    t.send("bwd", Message({"1.g": Field.tensor(torch.zeros_like(x))}).encode())
    t.send_control({"loss": 1.0, "compute_s": 0.0})


def _answer_eval(t: TcpTransport) -> None:
    t.recv_control()  # the eval policy
    while True:
        kind, data = t.recv_any()
        if kind != "eval_fwd":
            return
        n = Message.decode(data)["1.x"].shape[0]  # type: ignore[union-attr]
        t.send("eval_bwd", Message({"pred": Field.tensor(torch.zeros(n, dtype=torch.uint8), Category.LABELS)}).encode())
        t.send_control({"compute_s": 0.0})


def server(ports: list[int]) -> None:
    """Against the test's in-process client: malformed bwd, oversize bwd, silence, death mid-run."""
    for scenario, port in zip(("malformed", "oversize", "silent", "die"), ports):
        t = _open("server", port)
        t.recv_control()  # config
        t.send_control({"op": "ready", "host": "peer"})
        if scenario == "die":  # one real step and its evaluation, so the record has a history
            _answer_step(t)
            _answer_eval(t)  # returns on the next step's forward
            os.kill(os.getpid(), signal.SIGKILL)
        t.recv("fwd")
        if scenario == "malformed":
            t._send_frame("bwd", b"\x00" * 64)
        elif scenario == "oversize":
            _huge_header(t, "bwd")
        else:
            time.sleep(4.0)  # past the client's timeout
            t.close(flush=False)
            continue
        _expect_error(t)


if __name__ == "__main__":
    {"client": client, "server": server}[sys.argv[1]]([int(p) for p in sys.argv[2:]])
