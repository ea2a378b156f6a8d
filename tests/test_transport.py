"""Two processes over torch.distributed (gloo, 127.0.0.1 only) and the link model.

Every network test is bounded (pytest-timeout) and leaves no process or bound port behind; the
peers of the fault tests are small scripts (tests/_peers.py) that import no model or data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from adcbench.errors import WireFormatError
from adcbench.train.loop import RunConfig, run
from adcbench.train.remote import connect, free_port, run_client, run_pair, serve
from adcbench.transport import Loopback
from adcbench.transport.base import TransportError
from adcbench.transport.link import PRESETS, Link, parse_link, time_to_accuracy, timeline
from adcbench.transport.tcp import HEADER_BYTES, TcpTransport

ROOT = Path(__file__).resolve().parents[1]
PEERS = [sys.executable, str(ROOT / "tests" / "_peers.py")]
CONFIG = {"method": "none", "task": "digits", "max_steps": 3, "batch_size": 16, "eval_every": 1, "threads": 1}


def _peer(role: str, ports: list[int]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*PEERS, role, *map(str, ports)], env=env, stdout=subprocess.PIPE, text=True)


def _reap(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out or ""


def _bindable(port: int) -> bool:
    """Nobody listens on the port any more (connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tcp_matches_loopback_and_counts_framing():
    """Same seed, same record: bytes, accuracy and loss over two processes as over Loopback;
    the transport's counters are the meter's message bytes plus its header per frame."""
    cfg = RunConfig(**CONFIG, out=None, progress=False)
    local, remote = run(cfg, Loopback()), run_pair(cfg, timeout_s=60.0)
    keys = ("step", "bytes_fwd", "bytes_bwd", "acc", "acc_compressed", "train_loss", "breakdown_fwd")
    assert [{k: h[k] for k in keys} for h in remote["history"]] == [{k: h[k] for k in keys} for h in local["history"]]
    assert [h["traffic"]["bytes"] for h in remote["history"]] == [h["traffic"]["bytes"] for h in local["history"]]
    assert remote["bytes"] == local["bytes"] and remote["final"] == local["final"]
    t = remote["transport"]
    assert (local["transport"]["name"], t["name"], t["backend"], t["role"]) == ("loopback", "tcp", "gloo", "client")
    traffic = remote["history"][-1]["traffic"]
    assert traffic["messages"]["eval_fwd"] > 0  # the evaluation went over the same transport
    for d in ("fwd", "bwd", "eval_fwd", "eval_bwd"):
        assert t["frames"][d] == traffic["messages"][d]
        assert t["wire_bytes"][d] == traffic["bytes"][d] + HEADER_BYTES * t["frames"][d]


def _serve_on(port: int):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    with TcpTransport("server", timeout_s=20.0, max_message_bytes=2**24).open(60.0) as t:
        return serve(t)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_server_refuses_hostile_client_and_survives_its_death():
    ports = [free_port() for _ in range(3)]
    peer = _peer("client", ports)
    try:
        # the meter walks headers without the CRC, so the version is what it refuses
        with pytest.raises(WireFormatError, match="malformed|magic|truncated|not|version"):
            _serve_on(ports[0])
        with pytest.raises(WireFormatError, match="exceeds the cap of 16777216 bytes; refused before allocation"):
            _serve_on(ports[1])
        start = time.perf_counter()
        with pytest.raises(TransportError, match="lost the client"):
            _serve_on(ports[2])
        assert time.perf_counter() - start < 20.0
    finally:
        out = _reap(peer)
    assert out.count("peer saw: the server failed: WireFormatError") == 2, out  # both sides ended cleanly
    assert peer.returncode == -9 and not dist.is_initialized()
    assert all(_bindable(p) for p in ports)  # the rendezvous store let go of its port


def _client_on(port: int, out: Path, timeout: float = 20.0):
    cfg = RunConfig(**CONFIG, out=str(out), progress=False)
    with connect("127.0.0.1", port, timeout, 2**24, 60.0) as t:
        return run_client(cfg, t)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_client_refuses_hostile_server_and_survives_its_death(tmp_path):
    ports = [free_port() for _ in range(4)]
    peer = _peer("server", ports)
    try:
        with pytest.raises(WireFormatError):
            _client_on(ports[0], tmp_path)
        with pytest.raises(WireFormatError, match="refused before allocation"):
            _client_on(ports[1], tmp_path)
        start = time.perf_counter()
        with pytest.raises(TransportError, match="within 1.5 s"):
            _client_on(ports[2], tmp_path, timeout=1.5)
        assert time.perf_counter() - start < 10.0
        with pytest.raises(TransportError, match="lost the server"):
            _client_on(ports[3], tmp_path)
    finally:
        out = _reap(peer)
    assert out.count("peer saw: the client failed: WireFormatError") == 2, out
    assert peer.returncode == -9 and not dist.is_initialized()
    records = [json.loads(line) for line in (tmp_path / "digits.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["failed"] * 4
    assert "TransportError: lost the server" in records[-1]["error"]
    assert records[-1]["history"] and records[-1]["history"][0]["step"] == 1  # the history was kept


def test_link_presets_parse_and_replay():
    assert len(PRESETS) >= 4 and parse_link("LTE") is PRESETS["lte"]
    link = parse_link("up=8Mbit,down=16mbps,rtt=40ms")
    assert (link.up_bps, link.down_bps, link.rtt_s) == (8e6, 16e6, 0.04)
    for bad, match in (
        ("lt", "did you mean 'lte'"),
        ("up=1Mbit,down=2Mbit", "exactly"),
        ("up=x,down=1,rtt=1ms", "rate"),
    ):
        with pytest.raises(TransportError, match=match):
            parse_link(bad)
    entry = {
        "step": 10,
        "acc": 0.5,
        "traffic": {
            "bytes": {"fwd": 1_000_000, "bwd": 2_000_000, "eval_fwd": 1_000_000, "eval_bwd": 0},
            "messages": {"fwd": 10, "bwd": 10, "eval_fwd": 2, "eval_bwd": 2},
            "network_s": 0.5,
            "wall_s": 3.0,
        },
    }
    rec = {"history": [entry, {**entry, "step": 20, "acc": 0.9}]}
    (row, _) = timeline(rec, link)
    # up: 2 MB at 8 Mbit/s = 2 s; down: 2 MB at 16 Mbit/s = 1 s; 24 messages * 20 ms; compute 3 - 0.5
    assert row["link_s"] == pytest.approx(2 + 1 + 24 * 0.02) and row["compute_s"] == 2.5
    assert time_to_accuracy(rec, link, 0.8) == pytest.approx(2.5 + 3.48) and time_to_accuracy(rec, link, 0.95) is None
    fast = Link("x", 1e12, 1e12, 0.0)
    assert timeline(rec, fast)[0]["time_s"] == pytest.approx(2.5, abs=1e-3)


def _record(method: str, up_bytes: int, accs: list[float]) -> dict:
    history = []
    for i, acc in enumerate(accs, 1):
        b = {"fwd": i * up_bytes, "bwd": i * up_bytes, "eval_fwd": 0, "eval_bwd": 0}
        n = {"fwd": i, "bwd": i, "eval_fwd": 0, "eval_bwd": 0}
        history.append(
            {"step": i, "acc": acc, "traffic": {"bytes": b, "messages": n, "network_s": 0.0, "wall_s": 1.0 * i}}
        )
    return {"task": "t", "method": method, "config_hash": method, "seed": 0, "status": "completed",
            "history": history, "final": {"acc": accs[-1]}}  # fmt: skip


def test_leaderboard_section_times_each_method_under_each_preset(tmp_path):
    from adcbench.report.linktime import link_section

    big, small = _record("none", 10**6, [0.5, 1.0]), _record("adc", 10**3, [0.5, 0.8, 1.0])
    lines = link_section([big, small, {**small, "task": "other"}], "t", tmp_path, tmp_path)
    assert lines[0] == "### t: time to 90% accuracy over modelled links"
    row = {line.split(" | ")[0]: line.split(" | ")[1:] for line in lines if line.startswith("| `")}
    # none on nbiot: 2 s compute + 2 MB up at 25 kbit/s + 2 MB down at 20 kbit/s + 4 messages * 0.5 s
    expected = 2 + 8 * 2e6 / 25e3 + 8 * 2e6 / 20e3 + 2.0
    assert expected == 1444 and row["| `none`"][0] == "24.1 min"
    assert row["| `adc`"][0] != row["| `none`"][0] and len(row["| `adc`"]) == 5
    assert (tmp_path / "t-time.png").exists() and lines[-2] == "![t accuracy vs time](t-time.png)"
