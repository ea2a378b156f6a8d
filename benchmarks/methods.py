"""Bytes, time and memory of every method at the paper's shapes (B = 128, n = 197, d = 192).

    python benchmarks/methods.py [--quick] [--threads N] [--out docs/benchmarks/methods.md]

A DeiT-Tiny (`deit_tiny_patch16_224`, pretrained=False, 100 classes) is split after block 3 and
run on CPU on one batch of Gaussian images. For each method at several operating points:
- bytes per sample, forward and backward, as serialized (wire) and from the method's formula
  (analytic, framing excluded); information = payload + side + labels from `wire.breakdown`
  (benchmarks/wire_limit.py compares the wire with the information *content* from formulas);
- client-side time: encode + serialize the forward message, then deserialize + decode the
  gradient message and backpropagate through the method's own client ops (h is a leaf here, so
  the client blocks are not included); server-side decode time: deserialize + decode. Both are
  relative to the client step of `none` (forward + backward of patch embedding and blocks 1-3),
  timed right before the method in every repetition; the reported percentage is the median of
  the per-repetition ratios, so load from other processes inflates numerator and denominator alike;
- peak memory of the client-side encode (forward message): peak RSS minus RSS before, sampled
  every 0.2 ms by a thread. It is measured in a separate child process started with
  MALLOC_MMAP_THRESHOLD_=131072, so that large buffers are mmapped and returned to the OS on free
  and RSS follows allocations; timings come from the parent, where neither the sampling thread
  (which contends for the GIL) nor the forced mmaps (fresh pages) slow the code down.
For lossy methods the backward message is built from a Gaussian gradient (its size depends only
on shapes); for chains with a lossless stage it comes from the real server half (blocks 4-12 and
head), so entropy coding sees real gradients -- of a randomly initialized model on noise images,
so those gains are indicative only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from adcbench.core.method import Context, Cut
from adcbench.core.pipeline import Pipeline
from adcbench.core.records import cpu_name
from adcbench.model.split import split_vit
from adcbench.wire import breakdown

B, CLASSES, SPLIT = 128, 100, 3
CLIENT_BUDGET = 0.03  # target: client-side time <= 3 % of the client step
WIRE_BUDGET = 1.005  # target: wire <= 1.005 x information bytes

FULL = [
    "none",
    "float:dtype=float16",
    "quant:bits=8",
    "quant:bits=4",
    "quant:bits=2",
    "quant:bits=8,granularity=token",
    "quant:bits=4,granularity=tensor,rounding=stochastic",
    "topk:ratio=0.2",
    "topk:ratio=0.1",
    "topk:ratio=0.05",
    "topk:ratio=0.01",
    "randtopk:ratio=0.2",
    "randtopk:ratio=0.1",
    "randtopk:ratio=0.05",
    "randtopk:ratio=0.01",
    "bottleneck:ratio=0.5",
    "bottleneck:ratio=0.1",
    "bottleneck:ratio=0.01",
    "c3sl:R=2",
    "c3sl:R=8",
    "c3sl:R=32",
    "tokenprune:ratio=0.5",
    "tokenprune:ratio=0.25",
    "tokenprune:ratio=0.1",
    "adc:xi=0.5",
    "adc:xi=0.1",
    "adc:xi=0.01",
    "adc:xi=0.1,labels=soft",
    "adc-batch:xi=0.5",
    "adc-batch:xi=0.1",
    "adc-batch:xi=0.02",
    "adc-token:xi=0.5",
    "adc-token:xi=0.1",
    "adc-token:xi=0.02",
    "adc:xi=0.1+quant:bits=8",
    "bottleneck:ratio=0.1+quant:bits=4",
    "topk:ratio=0.1+quant:bits=8",
    "none+zstd",
    "quant:bits=8+zstd",
    "topk:ratio=0.1+zstd",
    "adc:xi=0.1+quant:bits=8+zlib",
    "splitfc:keep=0.2",
    "splitfc:keep=0.05,bits=2",
    "entropy-bottleneck:ratio=0.1",
]
QUICK = [
    "none",
    "quant:bits=8",
    "topk:ratio=0.1",
    "randtopk:ratio=0.1",
    "bottleneck:ratio=0.1",
    "c3sl:R=8",
    "tokenprune:ratio=0.25",
    "adc:xi=0.1",
    "adc-batch:xi=0.1",
    "adc-token:xi=0.1",
    "topk:ratio=0.1+quant:bits=8",
    "quant:bits=8+zstd",
]


# --------------------------------------------------------------------------------------------
# measurement helpers
# --------------------------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.0002)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median wall time over `reps` calls (after one warm-up call) and the last result."""
    out = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def info(data: bytes) -> int:
    b = breakdown(data)
    return b["payload"] + b["side"] + b["labels"]


# --------------------------------------------------------------------------------------------
# the model and the reference step
# --------------------------------------------------------------------------------------------
class Env:
    def __init__(self, reps: int, time_step: bool = True) -> None:
        import timm

        self.reps = reps
        nets = {}
        for attn in (False, True):
            torch.manual_seed(0)
            vit = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=CLASSES)
            nets[attn] = split_vit(vit, SPLIT, capture_attention=attn)
        self.client, self.server = nets[False]
        self.client_attn, _ = nets[True]
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(B, 3, 224, 224, generator=g)
        self.y = torch.randint(0, CLASSES, (B,), generator=g)
        with torch.no_grad():
            self.h, _ = self.client(self.x)
            _, self.attention = self.client_attn(self.x)
        n, d = self.h.shape[1:]
        self.cut = Cut(n, d, CLASSES, B, self.client.num_prefix_tokens)
        self.step_s = self._client_step() if time_step else float("nan")

    def client_step(self) -> None:
        """Forward + backward of the client half (patch embedding and blocks 1-3), as `none`."""
        self.client.zero_grad(set_to_none=True)
        h, _ = self.client(self.x)
        h.backward(self._grad)

    def _client_step(self) -> float:
        self._grad = torch.randn_like(self.h)
        return timed(self.client_step, self.reps)[0]


def measure(env: Env, spec: str) -> dict[str, Any]:
    pipe = Pipeline.from_spec(spec)
    pipe.setup(env.cut)
    for side in ("client", "server"):
        for m in pipe.modules(side):
            m.train(True)
    att = env.attention if pipe.needs_attention else None

    def encode():
        leaf = env.h.detach().requires_grad_()
        ctx = Context(True, env.cut, 0, torch.Generator().manual_seed(0), labels=env.y, attention=att)
        msg, carrier = pipe.encode_forward(leaf, ctx)
        return leaf, ctx, carrier, pipe.pack(msg)

    leaf, cctx, carrier, fwd = encode()  # warm-up; its graph serves the timed backward passes

    def decode():
        sctx = Context(True, env.cut, 0, torch.Generator().manual_seed(1))
        server_in, sleaf, targets = pipe.decode_forward(pipe.unpack(fwd), sctx)
        return server_in, sleaf, targets, sctx

    server_in, sleaf, targets, sctx = decode()

    # The gradient message: lossy formats have a size fixed by shapes, so a Gaussian gradient
    # gives their exact bytes; lossless stages depend on values, so there the real server half
    # (untimed: it is the server's model, not the method) produces the gradient.
    if pipe.lossless:
        F.cross_entropy(env.server(server_in), targets).backward()
    else:
        server_in.backward(torch.randn(server_in.shape, generator=torch.Generator().manual_seed(2)))
    bwd = pipe.pack(pipe.encode_backward(sleaf.grad, sctx))

    def client_backward():
        grad = pipe.decode_backward(pipe.unpack(bwd), cctx)
        carrier.backward(grad, retain_graph=True)  # through the method's client ops only

    client_backward()
    # Each repetition times the reference client step right next to the method, and the ratio is
    # taken per repetition: other load on the machine then inflates both sides alike.
    reps = []
    for _ in range(env.reps):
        step = _seconds(env.client_step)
        reps.append((step, _seconds(encode), _seconds(client_backward), _seconds(decode)))
    step_s = statistics.median(r[0] for r in reps)
    t_enc = statistics.median(r[1] for r in reps)
    t_back = statistics.median(r[2] for r in reps)
    t_dec = statistics.median(r[3] for r in reps)
    client_pct = 100 * statistics.median((r[1] + r[2]) / r[0] for r in reps)
    dec_pct = 100 * statistics.median(r[3] / r[0] for r in reps)
    a_fwd, a_bwd = pipe.analytic_bytes(B)
    return {
        "spec": spec,
        "fwd": len(fwd),
        "bwd": len(bwd),
        "a_fwd": a_fwd,
        "a_bwd": a_bwd,
        "info_fwd": info(fwd),
        "info_bwd": info(bwd),
        "lossless": bool(pipe.lossless),
        "exact": pipe.exact_size,
        "t_client": t_enc + t_back,
        "t_enc": t_enc,
        "t_back": t_back,
        "t_dec": t_dec,
        "step_s": step_s,
        "client_pct": client_pct,
        "dec_pct": dec_pct,
    }


def _seconds(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _setup(env: Env, spec: str) -> tuple[Pipeline, Callable[[], Any]]:
    pipe = Pipeline.from_spec(spec)
    pipe.setup(env.cut)
    att = env.attention if pipe.needs_attention else None

    def encode() -> bytes:
        ctx = Context(True, env.cut, 0, torch.Generator().manual_seed(0), labels=env.y, attention=att)
        msg, _ = pipe.encode_forward(env.h.detach().requires_grad_(), ctx)
        return pipe.pack(msg)

    return pipe, encode


def measure_memory(env: Env, spec: str) -> float:
    """Peak RSS above the starting level during one client encode (after a warm-up encode)."""
    _, encode = _setup(env, spec)
    encode()
    with PeakRSS() as mem:
        encode()
    return mem.delta_mb


def memory_pass(specs: list[str]) -> dict[str, float]:
    """Run `measure_memory` for every spec in a child process with mmap'd large allocations."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        subprocess.run([sys.executable, __file__, "--memory-json", str(out), "--only", *specs], env=env, check=True)
        return json.loads(out.read_text())


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]], env: Env) -> str:
    base = next((r["fwd"] + r["bwd"] for r in rows if r["spec"] == "none"), None)
    head = (
        "| method | fwd B/sample wire | fwd analytic | bwd B/sample wire | bwd analytic | ξ wire | "
        "wire/info fwd | wire/info bwd | client ms (enc+bwd) | client % step | server dec ms | "
        "server dec % step | adjacent step ms | enc peak ΔRSS MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        xi = f"{(r['fwd'] + r['bwd']) / base:.4f}" if base else "-"
        lines.append(
            f"| `{r['spec']}` | {r['fwd'] / B:,.1f} | {r['a_fwd'] / B:,.1f} | {r['bwd'] / B:,.1f} | "
            f"{r['a_bwd'] / B:,.1f} | {xi} | {r['fwd'] / r['info_fwd']:.5f} | {r['bwd'] / r['info_bwd']:.5f} | "
            f"{1e3 * r['t_client']:.1f} | {r['client_pct']:.2f} | {1e3 * r['t_dec']:.1f} | "
            f"{r['dec_pct']:.2f} | {1e3 * r['step_s']:.0f} | {r['mem_mb']:.1f} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]], env: Env) -> list[str]:
    out = []
    wire_bad = [r["spec"] for r in rows if max(r["fwd"] / r["info_fwd"], r["bwd"] / r["info_bwd"]) > WIRE_BUDGET]
    out.append(
        f"- wire ≤ {WIRE_BUDGET} × information bytes: "
        + ("met by every row" if not wire_bad else "NOT met by " + ", ".join(f"`{s}`" for s in wire_bad))
    )
    exact_bad = [
        r["spec"]
        for r in rows
        if not r["lossless"]
        and (
            (r["info_fwd"], r["info_bwd"]) != (r["a_fwd"], r["a_bwd"])
            if r["exact"]
            else r["info_fwd"] > r["a_fwd"] or r["info_bwd"] > r["a_bwd"]
        )
    ]
    out.append(
        "- information bytes == analytic bytes (lossy rows; ≤ for gap-coded positions, whose analytic size is "
        "the longest valid code): "
        + ("exact for every row" if not exact_bad else "differs for " + ", ".join(exact_bad))
    )
    slow = [(r["spec"], r["client_pct"]) for r in rows if r["client_pct"] > 100 * CLIENT_BUDGET]
    out.append(
        f"- client-side time ≤ {100 * CLIENT_BUDGET:.0f} % of the client step: "
        + ("met by every row" if not slow else "NOT met by " + ", ".join(f"`{s}` ({p:.1f} %)" for s, p in slow))
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer operating points and repetitions")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per measurement (median)")
    ap.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    ap.add_argument("--only", nargs="*", default=None, help="method specs to run instead of the default list")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--memory-json", default=None, help=argparse.SUPPRESS)  # child mode (memory pass)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = args.reps or (2 if args.quick else 3)
    specs = args.only or (QUICK if args.quick else FULL)
    if args.memory_json:
        env = Env(0, time_step=False)
        Path(args.memory_json).write_text(json.dumps({s: measure_memory(env, s) for s in specs}))
        return

    load = os.getloadavg()
    t0 = time.perf_counter()
    env = Env(reps)
    print(f"client step of none (fwd+bwd, B={B}): {env.step_s:.3f} s", flush=True)
    rows = []
    for spec in specs:
        rows.append(measure(env, spec))
        r = rows[-1]
        print(
            f"{spec:45s} fwd {r['fwd'] / B:10.1f} B/sample  bwd {r['bwd'] / B:10.1f}  "
            f"client {1e3 * r['t_client']:7.1f} ms ({r['client_pct']:.2f} %)  "
            f"dec {1e3 * r['t_dec']:7.1f} ms",
            flush=True,
        )
    del env.server  # free the server half before the memory pass
    print("memory pass (child process) ...", flush=True)
    for r, (spec, mb) in zip(rows, memory_pass(specs).items()):
        assert r["spec"] == spec
        r["mem_mb"] = mb
    elapsed = time.perf_counter() - t0
    cmd = "python benchmarks/methods.py " + " ".join(sys.argv[1:])
    doc = "\n".join(
        [
            "# Method benchmark: bytes, time and memory at the paper's shapes",
            "",
            "Produced by `benchmarks/methods.py` (see its docstring for what each column measures); "
            "do not edit by hand.",
            "",
            f"- command: `{cmd.strip()}`",
            f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores; torch {torch.__version__} with "
            f"{torch.get_num_threads()} intra-op threads; load average at start {load[0]:.2f}",
            f"- shapes: B = {B}, n = {env.cut.tokens}, d = {env.cut.dim}, {CLASSES} classes; "
            f"deit_tiny_patch16_224 (random init) split after block {SPLIT}; timings are medians of {reps} runs",
            f"- client step of `none` (forward + backward of the client half): {env.step_s * 1e3:.0f} ms at the start; "
            f"each row's percentages use the step timed next to it in each repetition (median step in the "
            f"'adjacent step' column; it varies with other load on the machine); run took {elapsed:.0f} s",
            "- ξ wire = (fwd + bwd wire bytes) / (fwd + bwd wire bytes of `none`); "
            "client ms = encode + serialize forward, then deserialize + decode gradient + backprop through the "
            "method's client ops; enc peak ΔRSS = peak RSS above the level before the client encode",
            "",
            table(rows, env),
            "",
            "## Targets",
            "",
            *verdicts(rows, env),
            "",
        ]
    )
    print(doc)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(doc)


if __name__ == "__main__":
    main()
