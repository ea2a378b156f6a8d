"""Step time of adcbench's own optimisations, measured side by side (issue 11).

    python benchmarks/speed.py [--batch 32] [--steps 5] [--quick] [--out docs/benchmarks/speed.md]

A DeiT-Tiny (`deit_tiny_patch16_224`, pretrained=False, 10 classes) is split after block 3 and
trained on CPU with Adam through the real Client/Server roles and a metered Loopback, on one
fixed batch of Gaussian images. Every comparison is A/B *interleaved*: after one warm-up step
each, A and B alternate step by step, and the table gives the median and range of the per-pair
ratios t_B / t_A (> 1: A is faster), so load from other processes on this shared machine
affects both sides alike. Comparisons:
- row skipping on vs off (`--no-row-skip`): the last client block only on the rows sent; beside
  it, the ratio of the two steps' FLOPs (torch.utils.flop_counter), the most row skipping could
  save if time followed FLOPs;
- row skipping and torch.compile together vs neither, for `adc:xi=0.1` (issue 11's goal);
- torch.compile of the transformer blocks vs eager (compile time itself reported separately);
- adcbench `none` vs a plain PyTorch split step with no wire (framework overhead);
- 1 vs 2 torch threads for `none`.
Plus the wall time of `adcbench --help`, `adcbench methods` and an unknown-method error
(median of 3 subprocess runs). "off" is adcbench's own unoptimised path; benchmarks/authors_step.py
times adcbench against the authors' own ADC code.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import timm
import torch
import torch.nn.functional as F

from adcbench.core.method import Cut
from adcbench.core.pipeline import Pipeline
from adcbench.core.records import cpu_name
from adcbench.model.split import cut_shape, split_vit
from adcbench.train.loop import train_step
from adcbench.train.roles import Client, Server
from adcbench.train.runtime import available_cores, compile_blocks
from adcbench.transport import Loopback

CLASSES, SPLIT, LR = 10, 3, 1e-4
ROW_SKIP = ["adc:xi=0.01", "adc:xi=0.1", "adc:xi=0.3", "tokenprune:ratio=0.25", "adc-token:xi=0.1"]
COMPILE = ["none", "adc:xi=0.1"]


def deit():
    """The benchmark's model: DeiT-Tiny, random init from seed 0 (the same weights every call)."""
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=CLASSES)


def fixed_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One fixed batch of Gaussian 224 px images and balanced labels."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, 224, 224, generator=g), torch.arange(batch) % CLASSES


def make_parties(spec: str, batch: int, row_skip: bool = True, compiled: bool = False) -> SimpleNamespace:
    """adcbench's Client and Server roles for `spec` on `deit()`, split after block SPLIT."""
    pipeline = Pipeline.from_spec(spec)
    cnet, snet = split_vit(deit(), SPLIT, capture_attention=pipeline.needs_attention)
    if compiled:
        compile_blocks(cnet, snet)
    n, d = cut_shape(cnet, 224, 3)
    cut = Cut(n, d, CLASSES, batch, cnet.num_prefix_tokens)
    pipeline.setup(cut)
    cpu = torch.device("cpu")
    return SimpleNamespace(
        client=Client(cnet, pipeline, cut, LR, 0, cpu, row_skip=row_skip),
        server=Server(snet, pipeline, cut, LR, 0, cpu),
    )


def make_step(spec: str, batch: int, row_skip: bool = True, compiled: bool = False):
    """A closure running one real training step (bytes both ways) on a fixed batch."""
    p = make_parties(spec, batch, row_skip, compiled)
    (x, y), transport = fixed_batch(batch), Loopback()
    return lambda: train_step(p, transport, x, y, 0)


def make_plain(batch: int):
    """The same split model and optimizers, no method, no bytes: the framework-free step."""
    cnet, snet = split_vit(deit(), SPLIT)
    copt, sopt = torch.optim.Adam(cnet.parameters(), lr=LR), torch.optim.Adam(snet.parameters(), lr=LR)
    x, y = fixed_batch(batch)

    def step() -> float:
        h, _ = cnet(x)
        leaf = h.detach().requires_grad_(True)
        loss = F.cross_entropy(snet(leaf), y)
        sopt.zero_grad(set_to_none=True), copt.zero_grad(set_to_none=True)
        loss.backward()
        sopt.step()
        h.backward(leaf.grad)
        copt.step()
        return loss.item()

    return step


def step_flops(step) -> int:
    """The FLOPs of one call of `step` (matrix products and convolutions, as torch counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def _timed(fn, threads: int) -> float:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleave(a, b, steps: int, threads=(1, 1)) -> tuple[float, float, float, float]:
    """(median t_A, median t_B, median t_B/t_A, min, max of the ratios) after one warm-up each."""
    _timed(a, threads[0]), _timed(b, threads[1])
    ta, tb = [], []
    for i in range(steps):
        order = ((a, ta, threads[0]), (b, tb, threads[1]))
        for fn, out, th in order if i % 2 == 0 else order[::-1]:  # alternate who goes first
            out.append(_timed(fn, th))
    ratios = [y / x for x, y in zip(ta, tb)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios), min(ratios), max(ratios)


def _row(label: str, res: tuple[float, ...]) -> str:
    ta, tb, r, lo, hi = res
    return f"| {label} | {ta:.3f} | {tb:.3f} | **{r:.3f}×** | {lo:.3f}–{hi:.3f} |"


def write_table(out: Path, lines: list[str]) -> None:
    """Replace what follows the `<!-- table -->` marker in `out`, keeping the text above it."""
    head = out.read_text().split("<!-- table -->")[0] if out.exists() else ""
    out.write_text(head + "<!-- table -->\n" + "\n".join(lines) + "\n")


def startup_times() -> list[str]:
    exe = [sys.executable, "-m", "adcbench.cli"]
    rows = []
    for label, args in (
        ("adcbench --help", ["--help"]),
        ("adcbench methods", ["methods"]),
        ("adcbench run --method adcx (unknown name)", ["run", "--method", "adcx", "--out", "/tmp", "--quiet"]),
        ("adcbench run --device cuda (no CUDA here)", ["run", "--device", "cuda", "--out", "/tmp", "--quiet"]),
        ("adcbench run --task cifar100 (no data, no hub)", ["run", "--task", "cifar100", "--out", "/tmp", "--quiet"]),
        (
            "adcbench run --method splitfc --budget-accounting nominal",
            ["run", "--method", "splitfc", "--budget-accounting", "nominal", "--budget-bytes", "1M", "--out", "/tmp"],
        ),
    ):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(exe + args, capture_output=True, check=False)
            times.append(time.perf_counter() - t0)
        rows.append(f"| `{label}` | {statistics.median(times):.2f} | {min(times):.2f}–{max(times):.2f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="adc:xi=0.1 only, 3 steps (a smoke run)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    steps = 3 if args.quick else args.steps
    lines = [
        f"Measured {datetime.date.today()} on {cpu_name()} ({available_cores():g} cores available to the "
        f"process, load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())} at the start), "
        f"torch {torch.__version__}, timm {timm.__version__}: DeiT-Tiny 224 px, split after block {SPLIT}, "
        f"B = {args.batch}, Adam, {steps} interleaved pairs after one warm-up step each, 1 thread unless noted.",
        f"Command: `python benchmarks/speed.py --batch {args.batch} --steps {steps}"
        + (" --quick" if args.quick else "")
        + (" --no-compile" if args.no_compile else "")
        + "`",
        "",
        "| comparison (A vs B) | A s/step | B s/step | B/A (median) | range |",
        "|---|---|---|---|---|",
    ]
    flops = []
    for spec in ["adc:xi=0.1"] if args.quick else ROW_SKIP:
        on, off = make_step(spec, args.batch, True), make_step(spec, args.batch, False)
        res = interleave(on, off, steps)
        lines.append(_row(f"`{spec}`: row skipping on vs off", res))
        f_on, f_off = step_flops(on), step_flops(off)
        flops.append(f"| `{spec}` | {f_on / 1e9:.1f} | {f_off / 1e9:.1f} | {f_off / f_on:.3f}× | {res[2]:.3f}× |")
        print(lines[-1], flops[-1], flush=True)
    res = interleave(make_step("none", args.batch), make_plain(args.batch), steps)
    lines.append(_row("`none` vs plain PyTorch split step (no wire)", res))
    print(lines[-1], flush=True)
    if not args.quick:
        res = interleave(make_step("none", args.batch), make_step("none", args.batch), steps, threads=(1, 2))
        lines.append(_row("`none`: 1 thread vs 2 threads", res))
        print(lines[-1], flush=True)
    if not args.no_compile:
        for spec in ["adc:xi=0.1"] if args.quick else COMPILE:
            compiled = make_step(spec, args.batch, compiled=True)
            t0 = time.perf_counter()
            compiled()  # the first call compiles (forward and backward)
            first = time.perf_counter() - t0
            res = interleave(compiled, make_step(spec, args.batch), steps)
            lines.append(_row(f"`{spec}`: compiled vs eager (first compiled step {first:.0f} s)", res))
            print(lines[-1], flush=True)
        both = make_step("adc:xi=0.1", args.batch, row_skip=True, compiled=True)
        both()  # compiles
        res = interleave(both, make_step("adc:xi=0.1", args.batch, row_skip=False), steps)
        lines.append(_row("`adc:xi=0.1`: row skipping and compile vs neither", res))
        print(lines[-1], flush=True)
    lines += [
        "",
        "| row skipping: FLOPs per step | on (GFLOP) | off (GFLOP) | off/on: the FLOP bound | measured |",
        "|---|---|---|---|---|",
        *flops,
    ]
    lines += ["", "| start-up (subprocess, median of 3) | s | range |", "|---|---|---|", *startup_times()]
    print("\n".join(lines[-5:]))
    if args.out:
        write_table(args.out, lines)


if __name__ == "__main__":
    main()
