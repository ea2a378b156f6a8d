"""Images/s of the input pipeline and of one uncompressed split-learning step, on this CPU.

For cifar10 (cpu32 preset, 32 px) and imagenette (cpu112 preset, 112 px) on the real archives:
  - decode: the one-off decode of the train archive into the uint8 cache (cold cache);
  - open: opening the decoded cache again (a new task instance, warm cache), in seconds;
  - load: iterating the train DataLoader as the training loop builds it (shuffle, drop_last,
    the task's batch size and workers), augmentation included;
  - step: forward + backward + Adam on both halves of the default split model (client blocks
    [0, l), server the rest), the activation handed over detached as over a wire, no compression.

    python benchmarks/task_throughput.py [--data-root ../shared/data] [--steps 10] [--threads 1,2]

writes docs/benchmarks/task-throughput.md (the command, date, CPU, torch threads, load average).

    python benchmarks/task_throughput.py --workers 0,1,2,4,8 [--load-batches 20]

measures only the DataLoader (images/s per worker count, pinned memory as on CUDA) and writes
docs/benchmarks/loader-workers.md: a run is data-bound when its step rate (images/s) exceeds what
the loader delivers with the workers the loop gives it (docs/gpu.md)."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from adcbench.core.records import cpu_name
from adcbench.model.backbones import build_backbone

REPO = Path(__file__).resolve().parents[1]
CASES = (("cifar10", "cpu32", "cifar10-jpg"), ("imagenette", "cpu112", "imagenette2-224"))
DEFAULT_OUT = REPO / "docs" / "benchmarks" / "task-throughput.md"


def measure(task_name: str, preset: str, data: Path, steps: int, load_batches: int) -> dict[str, float]:
    from adcbench.data.task import get_task
    from adcbench.model.split import split_vit

    out: dict[str, float] = {}
    task = get_task(task_name)(data=str(data), preset=preset)
    t0 = time.perf_counter()
    train = task.load_split("train")
    out["decode"] = len(train) / (time.perf_counter() - t0)  # cold only on the first call per task
    t0 = time.perf_counter()
    train = get_task(task_name)(data=str(data), preset=preset).load_split("train")
    out["open_s"] = time.perf_counter() - t0
    out["n_train"] = len(train)

    loader = DataLoader(
        train,
        batch_size=task.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=task.num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    for _ in range(load_batches):
        x, y = next(it)
    out["load"] = load_batches * task.batch_size / (time.perf_counter() - t0)

    torch.manual_seed(0)
    client, server = split_vit(build_backbone(task, "scratch")[0], task.split_index)
    opt_c = torch.optim.Adam(client.parameters(), lr=task.lr)
    opt_s = torch.optim.Adam(server.parameters(), lr=task.lr)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        h, _ = client(x)
        h_server = h.detach().requires_grad_(True)  # what crosses the cut
        loss = loss_fn(server(h_server), y)
        opt_s.zero_grad(set_to_none=True)
        loss.backward()
        opt_s.step()
        opt_c.zero_grad(set_to_none=True)
        h.backward(h_server.grad)
        opt_c.step()

    for _ in range(2):  # warm-up: allocator, first-call overheads
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    out["step"] = steps * task.batch_size / (time.perf_counter() - t0)
    out["batch"] = task.batch_size
    out["workers"] = task.num_workers
    out["tokens"] = int(client(x[:1])[0].shape[1])
    return out


def measure_loader(task_name: str, preset: str, data: Path, workers: int, batches: int) -> float:
    """Images/s of the train DataLoader alone with `workers` workers (pinned, prefetching, as the
    loop builds it on CUDA); worker start-up and the first batch are not counted."""
    from adcbench.data.task import get_task

    task = get_task(task_name)(data=str(data), preset=preset)
    extra = {"persistent_workers": True, "prefetch_factor": 4} if workers else {}
    loader = DataLoader(
        task.load_split("train"),
        batch_size=task.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),  # pinning needs a CUDA runtime; it is what CUDA runs do
        generator=torch.Generator().manual_seed(0),
        **extra,
    )
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * task.batch_size / (time.perf_counter() - t0)


def loader_table(args: argparse.Namespace) -> int:
    rows = []
    for task_name, preset, sub in CASES:
        data = args.data_root / sub
        if not data.is_dir():
            print(f"skipping {task_name}: {data} not found", file=sys.stderr)
            continue
        for w in (int(v) for v in args.workers.split(",")):
            rate = measure_loader(task_name, preset, data, w, args.load_batches)
            print(task_name, preset, w, round(rate), file=sys.stderr)
            rows.append(f"| {task_name} | {preset} | {w} | {rate:,.0f} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cmd = "python benchmarks/task_throughput.py" + "".join(f" {a}" for a in sys.argv[1:])
    lines = [
        "# DataLoader throughput per worker count",
        "",
        f"Produced by `{cmd}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores; torch {torch.__version__}; "
        f"1-min load average at the end: {load:.1f}; pinned memory: {torch.cuda.is_available()}",
        "- The train loader alone (shuffle, the preset's augmentation and batch size), no model. With"
        " more workers than free cores the rate stops rising; compare it with the step rate of the run.",
        "",
        "| task | preset | workers | load (img/s) |",
        "|---|---|---|---|",
        *rows,
    ]
    out = args.out.parent / "loader-workers.md" if args.out == DEFAULT_OUT else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--load-batches", type=int, default=20)
    ap.add_argument(
        "--threads",
        default=str(torch.get_num_threads()),
        help="comma-separated torch thread counts to measure, e.g. 1,2",
    )
    ap.add_argument("--workers", default=None, help="comma-separated worker counts: the loader-alone table only")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.workers:
        return loader_table(args)  # the decoded cache is reused: decoding is not what is measured
    os.environ["ADCBENCH_CACHE"] = tempfile.mkdtemp(prefix="adcbench-bench-")  # cold decode

    rows = []
    for task_name, preset, sub in CASES:
        data = args.data_root / sub
        if not data.is_dir():
            print(f"skipping {task_name}: {data} not found", file=sys.stderr)
            continue
        for k, threads in enumerate(int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            r = measure(task_name, preset, data, args.steps, args.load_batches)
            r["threads"] = threads
            if k:  # the cache is warm now: only the first row measured the one-off decode
                r["decode"] = float("nan")
            print(task_name, {k: round(v, 2) for k, v in r.items()}, file=sys.stderr)
            rows.append((task_name, preset, r))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cmd = "python benchmarks/task_throughput.py" + "".join(f" {a}" for a in sys.argv[1:])
    lines = [
        "# Task throughput on CPU",
        "",
        f"Produced by `{cmd}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores; torch {torch.__version__}; "
        f"1-min load average at the end: {load:.1f} (other processes compete for the cores when it "
        "exceeds the core count; torch's multi-threaded ops then slow down far more than 1-thread ones)",
        "- decode: one-off decode of the train archive into the uint8 cache (cold); open: reopening"
        " that cache; load: train DataLoader (shuffle, augmentation, the task's batch size/workers);"
        " step: forward + backward + Adam of the split model (no compression, no wire).",
        "",
        "| task | preset | tokens at cut | batch | workers | torch threads | train images | decode (img/s) | open (s) | load (img/s) | step (img/s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, preset, r in rows:
        lines.append(
            f"| {name} | {preset} | {r['tokens']} | {r['batch']} | {r['workers']} | {r['threads']} | "
            f"{r['n_train']:,} | {'–' if r['decode'] != r['decode'] else format(r['decode'], ',.0f')} | "
            f"{r['open_s']:.2f} | {r['load']:,.0f} | {r['step']:,.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
