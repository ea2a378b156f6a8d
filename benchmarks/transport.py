"""Step time of split learning over `tcp` (two processes, gloo on 127.0.0.1) against `loopback`
(one process), side by side on this CPU, and the transport's framing per message.

Each case trains the same configuration (method `none`: the largest messages) for --steps steps,
alternating loopback and tcp --repeats times; the step time is the training wall time up to the
final evaluation divided by the steps; the table gives medians and their ratio.

    python benchmarks/transport.py [--tasks digits,cifar10] [--steps 20] [--repeats 2] [--val-fraction 0.02]
        [--data-root /work/shared/data] [--out docs/benchmarks/transport.md]

writes docs/benchmarks/transport.md (the command, date, CPU, load average)."""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
from pathlib import Path

from adcbench.core.records import cpu_name
from adcbench.train.loop import RunConfig, run
from adcbench.train.remote import run_pair
from adcbench.transport.tcp import HEADER_BYTES

REPO = Path(__file__).resolve().parents[1]
DATA = {"cifar10": ("cpu32", "cifar10-jpg")}


def _step_s(rec: dict) -> float:
    return rec["history"][-1]["wall_s"] / rec["steps"]  # the entry's wall time is taken before its evaluation


def measure(task: str, data_root: Path, steps: int, repeats: int, method: str, val_fraction: float) -> dict:
    params, data = {}, None
    if task in DATA:
        preset, folder = DATA[task]
        params, data = {"preset": preset}, str(data_root / folder)
    cfg = RunConfig(
        method=method, task=task, task_params=params, data=data, max_steps=steps, eval_every=0,
        val_fraction=val_fraction, threads=1, out=None, progress=False,
    )  # fmt: skip
    loop, tcp = [], []
    for _ in range(repeats):
        loop.append(_step_s(run(cfg)))
        rec = run_pair(cfg, timeout_s=120.0)
        tcp.append(_step_s(rec))
    t = rec["transport"]
    frames = sum(t["frames"].values())
    return {
        "task": task,
        "loop_ms": 1e3 * statistics.median(loop),
        "tcp_ms": 1e3 * statistics.median(tcp),
        "fwd_bytes": rec["bytes"]["fwd"] / rec["steps"],
        "framing": HEADER_BYTES,
        "framing_share": sum(t["wire_bytes"].values()) / (sum(t["wire_bytes"].values()) - HEADER_BYTES * frames) - 1,
        "control_per_step": t["control_bytes"] / rec["steps"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="digits,cifar10")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--method", default="none")
    # The closing evaluation is not timed; a small validation split keeps it short on large tasks.
    ap.add_argument("--val-fraction", type=float, default=0.0)
    ap.add_argument("--data-root", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "transport.md")
    args = ap.parse_args()
    rows = [
        measure(t, args.data_root, args.steps, args.repeats, args.method, args.val_fraction)
        for t in args.tasks.split(",")
    ]
    lines = [
        "# Transport: tcp (two processes) vs loopback (one process)",
        "",
        f"`python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
        "",
        f"{datetime.date.today()}, {cpu_name()}, 1 torch thread per process, load average "
        f"{os.getloadavg()[0]:.1f} (a shared machine: ratios, not absolute times, are the result).",
        f"Method `{args.method}`, {args.steps} steps, median of {args.repeats} alternating runs.",
        "",
        "| task | loopback ms/step | tcp ms/step | tcp / loopback | fwd bytes/step | framing B/message "
        "| framing share of bytes | control B/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['loop_ms']:.1f} | {r['tcp_ms']:.1f} | {r['tcp_ms'] / r['loop_ms']:.2f} "
            f"| {r['fwd_bytes']:,.0f} | {r['framing']} | {100 * r['framing_share']:.4f} % | {r['control_per_step']:.0f} |"
        )
    lines += [
        "",
        "Framing is the transport's own 16-byte header (kind, length) per message; gloo's internal "
        "per-operation headers and TCP/IP overhead are below what this transport can count. Control "
        "bytes (loss and compute time per reply, evaluation policy) are benchmark bookkeeping, not "
        "split-learning traffic, and never enter the meter.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
