"""Link models: what a run would have taken over a link, replayed from its record (no re-training).

A link is uplink (client -> server) and downlink bandwidth and a round-trip time. The model is
linear and deterministic: a message of b bytes sent up costs 8*b/up + rtt/2 seconds, down
8*b/down + rtt/2, messages do not overlap one another or the compute (split learning is
sequential: the client waits for the gradient before its next step). The virtual time at a
history entry is then compute + the link time of every message up to it, where compute is the
measured wall time minus the time the roles waited on the network (`Meter.network_s`). Queueing,
TCP slow start, loss and the transport's own framing are left out; docs/transport.md says how the
model was checked against a shaped loopback.

The preset figures are cited or labelled as assumptions in docs/transport.md (`source` below).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from .base import DIRECTIONS, TransportError

UP, DOWN = ("fwd", "eval_fwd"), ("bwd", "eval_bwd")


@dataclasses.dataclass(frozen=True)
class Link:
    name: str
    up_bps: float  # client -> server, bit/s
    down_bps: float  # server -> client, bit/s
    rtt_s: float
    source: str = "user"

    def seconds(self, up_bytes: float, down_bytes: float, messages: float) -> float:
        return 8 * up_bytes / self.up_bps + 8 * down_bytes / self.down_bps + messages * self.rtt_s / 2

    def spec(self) -> str:
        return f"up={_fmt_rate(self.up_bps)},down={_fmt_rate(self.down_bps)},rtt={self.rtt_s * 1e3:g}ms"


# Keys of `source` are explained, with their references, in docs/transport.md ("Link presets").
PRESETS = {
    "nbiot": Link("nbiot", 25e3, 20e3, 1.0, "assumption: ~1/10 of the Rel-13 Cat-NB1 peak (Anritsu); RTT assumed"),
    "ltem": Link("ltem", 375e3, 300e3, 0.1, "assumption: Rel-13 Cat-M1 half-duplex rates; RTT assumed"),
    "lte": Link("lte", 10e6, 20e6, 0.05, "Ookla 2017 mobile mean ~20 Mbit/s down; uplink and RTT assumed"),
    "wifi": Link("wifi", 50e6, 100e6, 0.01, "assumption: a home Wi-Fi on a fixed line; not a measurement"),
    "5g": Link("5g", 21.08e6, 166.13e6, 0.03, "Ookla Q3 2021 global 5G medians; RTT assumed"),
    "datacenter": Link("datacenter", 10e9, 10e9, 0.0002, "assumption: 10 GbE inside one datacenter"),
}

_RATE = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _fmt_rate(bps: float) -> str:
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g}{unit}"
    return f"{bps:g}bit"


def _quantity(text: str, units: dict[str, float], what: str) -> float:
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)", text.strip().lower())
    if not m or m.group(2) not in units:
        raise TransportError(f"{text!r} is not a {what} (units: {', '.join(units)})")
    value = float(m.group(1)) * units[m.group(2)]
    if value <= 0 and what == "rate":
        raise TransportError(f"{text!r}: a rate must be > 0")
    return value


def parse_link(text: str) -> Link:
    """A preset name, or `up=10Mbit,down=50Mbit,rtt=40ms`."""
    key = text.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    if "=" not in key:
        close = difflib.get_close_matches(key, PRESETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TransportError(f"unknown link {text!r}{hint} (presets: {', '.join(PRESETS)}, or up=..,down=..,rtt=..)")
    parts = dict(p.split("=", 1) for p in key.split(",") if "=" in p)
    if set(parts) != {"up", "down", "rtt"}:
        raise TransportError(f"link {text!r} needs exactly up=, down= and rtt= (e.g. up=10Mbit,down=50Mbit,rtt=40ms)")
    return Link(
        text,
        _quantity(parts["up"], {**_RATE, "": 1}, "rate"),
        _quantity(parts["down"], {**_RATE, "": 1}, "rate"),
        _quantity(parts["rtt"], _TIME, "time"),
    )


def _traffic(entry: dict[str, Any]) -> tuple[dict[str, int], dict[str, int], float, float, bool]:
    """Cumulative bytes, messages, wall and network seconds at an entry; older records lack the
    eval traffic and message counts, so they are replayed from the training bytes, one message a step."""
    t = entry.get("traffic")
    if t:
        return t["bytes"], t["messages"], t["wall_s"], t.get("network_s", 0.0), True
    steps = entry["step"]
    b = {"fwd": entry["bytes_fwd"], "bwd": entry["bytes_bwd"], "eval_fwd": 0, "eval_bwd": 0}
    return b, {"fwd": steps, "bwd": steps, "eval_fwd": 0, "eval_bwd": 0}, entry["wall_s"], 0.0, False


def timeline(record: dict[str, Any], link: Link) -> list[dict[str, Any]]:
    """One row per history entry: accuracy and the virtual seconds it was reached at."""
    rows = []
    for entry in record.get("history", []):
        b, n, wall, network, complete = _traffic(entry)
        compute = max(wall - network, 0.0)
        link_s = link.seconds(sum(b[d] for d in UP), sum(b[d] for d in DOWN), sum(n[d] for d in DIRECTIONS))
        rows.append(
            {
                "step": entry["step"],
                "acc": entry.get("acc"),
                "acc_compressed": entry.get("acc_compressed"),
                "compute_s": round(compute, 6),
                "link_s": round(link_s, 6),
                "time_s": round(compute + link_s, 6),
                "eval_traffic": complete,
            }
        )
    return rows


def time_to_accuracy(record: dict[str, Any], link: Link, target: float, key: str = "acc") -> float | None:
    """Virtual seconds until the history first reaches `target` accuracy (None: never)."""
    return next((r["time_s"] for r in timeline(record, link) if (r[key] or 0) >= target), None)
