"""Split learning across two processes or hosts: the client role in one, the server role in another.

The client process runs the ordinary loop (`loop.run`) with a `ClientExchange`: it sends the
forward and evaluation messages over a `TcpTransport` and gets the gradient and prediction
messages back; the server process (`serve`) answers them. The message bytes are exactly those of
`Loopback`. Bookkeeping travels as control frames the meter never counts: the run's
configuration (so both sides build the same parties from the same seed), the server's loss and
compute time per reply, the evaluation policy, stop and error reports.

Both processes build the full parties from the configuration, so the model initialisation drawn
from the seed is the same as in one process; the server then uses only its half (it also loads
the task's data for that, though it never reads a batch).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from typing import Any

import torch

from adcbench.core.pipeline import Pipeline
from adcbench.errors import AdcbenchError, WireFormatError
from adcbench.train.loop import Exchange, Parties, RunConfig, build_parties, run
from adcbench.transport.base import Transport, TransportError
from adcbench.transport.tcp import CONTROL, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TIMEOUT_S, TcpTransport
from adcbench.wire import Message


def _tcp(transport: Transport) -> TcpTransport:
    if not isinstance(transport, TcpTransport):
        raise TypeError("a remote exchange needs a TcpTransport")
    return transport


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


SETUP_TIMEOUT_S = 600.0  # building the parties may load and decode a dataset; a dead peer still ends it at once


class ClientExchange(Exchange):
    """The client's half of a step and of an evaluation; the server answers each message with its
    reply and a control frame (loss, compute seconds), which splits the wait into network and compute.
    Both sides build their parties at the same time: the server's `ready` is awaited (for up to
    `setup_s`) before the first exchange."""

    def __init__(self, setup_s: float = SETUP_TIMEOUT_S) -> None:
        self.setup_s, self.ready = setup_s, False

    def _await_ready(self, t: TcpTransport) -> None:
        if not self.ready:
            t.peer_host = str(t.recv_control(self.setup_s).get("host", ""))
            self.ready = True

    def _reply(self, t: TcpTransport, direction: str) -> tuple[bytes, dict[str, Any]]:
        start = time.perf_counter()
        data = t.recv(direction)
        info = t.recv_control()
        t.meter.network_s += max(time.perf_counter() - start - float(info.get("compute_s", 0.0)), 0.0)
        return data, info

    def train_step(self, p: Parties, transport: Transport, x: torch.Tensor, y: torch.Tensor, step: int) -> float:
        t = _tcp(transport)
        self._await_ready(t)
        t.send("fwd", p.client.forward(x, y, step))
        grad, info = self._reply(t, "bwd")
        p.client.backward(grad)
        return float(info["loss"])

    def evaluate(
        self, p: Parties, transport: Transport, pipe: Pipeline, which: str = "final", progress: bool = False
    ) -> tuple[float, float]:
        t = _tcp(transport)
        self._await_ready(t)
        t.send_control({"op": "eval", "policy": "raw" if pipe is p.raw_pipeline else "compressed"})
        before = t.meter.bytes["eval_fwd"]
        correct = total = 0
        for x, y in p.eval_loaders[which]:
            t.send("eval_fwd", p.client.forward_eval(x, pipe))
            data, _ = self._reply(t, "eval_bwd")
            pred = Message.decode(data)["pred"]
            correct += int((pred.long() == y).sum())  # type: ignore[union-attr]
            total += len(y)
        return correct / total, (t.meter.bytes["eval_fwd"] - before) / total


def run_client(cfg: RunConfig, transport: TcpTransport, setup_s: float = SETUP_TIMEOUT_S) -> dict[str, Any]:
    """Train `cfg` as the client of the server at the other end of the open `transport`."""
    transport.send_control({"op": "config", "config": dataclasses.asdict(cfg), "host": socket.gethostname()})
    try:
        record = run(cfg, transport, ClientExchange(setup_s))
    except BaseException as exc:
        transport.report_error(_one_line(exc))  # the server stops too
        raise
    transport.send_control({"op": "stop"})
    transport.recv_control()  # "done": the server has had every frame
    return record


def _server_config(msg: dict[str, Any]) -> RunConfig:
    if msg.get("op") != "config" or not isinstance(msg.get("config"), dict):
        raise WireFormatError("the client's first control frame must carry the run's configuration")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    config = {k: v for k, v in msg["config"].items() if k in fields}
    return RunConfig(**{**config, "out": None, "progress": False})  # the client writes the record


def _serve_loop(p: Parties, transport: TcpTransport, setup_s: float) -> int:
    step, pipe = 0, p.pipeline
    wait: float | None = setup_s  # the first message may wait for the client's own setup
    while True:
        kind, data = transport.recv_any(wait)
        wait = None
        start = time.perf_counter()
        if kind == "fwd":
            grad, loss = p.server.train_step(data, step)
            transport.send("bwd", grad)
            transport.send_control({"loss": loss, "compute_s": time.perf_counter() - start})
            step += 1
        elif kind == "eval_fwd":
            transport.send("eval_bwd", p.server.predict(data, pipe))
            transport.send_control({"compute_s": time.perf_counter() - start})
        elif kind == CONTROL:
            obj = transport.parse_control(data)  # the client's error report raises here
            op = obj.get("op")
            if op == "stop":
                transport.send_control({"op": "done", "steps": step})
                return step
            if op != "eval":
                raise WireFormatError(f"unknown control operation {op!r} from the client")
            pipe = p.raw_pipeline if obj.get("policy") == "raw" else p.pipeline
        else:
            raise WireFormatError(f"a server never receives {kind} messages")


def serve(transport: TcpTransport, setup_s: float = SETUP_TIMEOUT_S) -> dict[str, Any]:
    """Serve one run on the open `transport`: the client's configuration, then its messages until stop.
    Any failure is reported to the client (so it ends too) and re-raised."""
    try:
        hello = transport.recv_control(setup_s)
        cfg, transport.peer_host = _server_config(hello), str(hello.get("host", ""))
        p = build_parties(cfg)
        transport.send_control({"op": "ready", "host": socket.gethostname()})
        steps = _serve_loop(p, transport, setup_s)
    except BaseException as exc:
        if not (isinstance(exc, TransportError) and "the client failed" in str(exc)):
            transport.report_error(_one_line(exc))
        raise
    return {"steps": steps, "task": cfg.task, "method": p.pipeline.spec, "transport": transport.describe()}


def set_master(host: str, port: int) -> None:
    """env:// rendezvous reads the server's address from the environment, as under torchrun."""
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = host, str(port)


def serve_once(host: str, port: int, timeout_s: float, max_message_bytes: int, wait_s: float) -> dict[str, Any]:
    """Listen at host:port (the rendezvous store), wait up to wait_s for a client, serve its run."""
    set_master(host, port)
    with TcpTransport("server", timeout_s, max_message_bytes).open(wait_s) as transport:
        return serve(transport)


def connect(host: str, port: int, timeout_s: float, max_message_bytes: int, wait_s: float) -> TcpTransport:
    """The client's end, joined to the server at host:port (unopened transports are not returned)."""
    set_master(host, port)
    return TcpTransport("client", timeout_s, max_message_bytes).open(wait_s)


def serve_process(host: str, port: int, timeout_s: float, max_message_bytes: int, wait_s: float) -> None:
    """A server process's body: one run, errors as one line on stderr and exit code 2."""
    try:
        serve_once(host, port, timeout_s, max_message_bytes, wait_s)
    except AdcbenchError as exc:
        print(f"adcbench serve: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        sys.exit(2)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_pair(
    cfg: RunConfig,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """Both roles on this machine: the server in a spawned process, the client here."""
    port, wait_s = free_port(host), max(timeout_s, 60.0)
    # A fresh interpreter (not multiprocessing, which would re-run an unguarded caller's script).
    code = f"from adcbench.train.remote import serve_process; serve_process({host!r}, {port}, {timeout_s!r}, {max_message_bytes}, {wait_s!r})"
    server = subprocess.Popen([sys.executable, "-c", code])
    try:
        with connect(host, port, timeout_s, max_message_bytes, wait_s) as transport:
            return run_client(cfg, transport)
    finally:
        try:
            server.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
