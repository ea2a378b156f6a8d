"""Whole-message wire bytes against the information content of each payload, at the paper's shapes.

    python benchmarks/wire_limit.py [--out docs/benchmarks/wire-limit.md] [--only SPEC ...] [--reps N]
                                    [--json FILE] [--compare BASELINE.json]

Bytes against an earlier version (the "base fwd wire/info" column): run this script with the
earlier tree first on the import path, e.g.

    git archive 3bccf4c | tar -x -C /tmp/base && ln -s ../methods /tmp/base/adcbench/methods
    (cd /tmp && PYTHONPATH=/tmp/base python $OLDPWD/benchmarks/wire_limit.py --json /tmp/base.json)
    python benchmarks/wire_limit.py --compare /tmp/base.json --out docs/benchmarks/wire-limit.md

Encode/decode *time* against an earlier tree is measured side by side, interleaved, by
benchmarks/wire_cost.py (docs/benchmarks/wire-cost.md); the times here are this tree's alone.

Shapes: B = 128, n = 197, d = 192 (DeiT-Tiny cut), 100 classes. The activations are Gaussian, the
attention rows a softmax of Gaussian scores and the gradient Gaussian (sizes depend on shapes
and, for gap-coded positions, on where the kept values are), so no model is needed and a run takes
about a minute on one thread.

Information content is computed here from the formulas below, independently of the encoder (it
never looks at the fields a method sends):
- values: count × their stated width (float32 32 bits, float16 16, n-bit codes n);
- quantizer scales: 2 float32 per group (they are values at their stated width);
- sparse positions: log2 C(D, k) bits per sample (D = values per sample, k kept);
- labels: B · ceil(log2 C) bits; cluster membership: B · ceil(log2 T) bits when T < B (none when
  T = B: sample i is cluster i);
- a c3sl padded-batch count: 32 bits.
A stage this script does not know falls back to its own analytic size (marked `*`).

Ratio = wire bytes / information bytes, per direction; the target is <= 1.005 for every lossy
method (tests/test_wire_limit.py holds the registry to it at three operating points each).
Times are medians of `--reps` runs of the client-side encode + serialize and the server-side
deserialize + decode of the forward message, at 1 torch thread.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from adcbench.core.method import Context, Cut, Method
from adcbench.core.pipeline import Pipeline

B, N_TOKENS, DIM, CLASSES = 128, 197, 192, 100
TARGET = 1.005
CUT = Cut(N_TOKENS, DIM, CLASSES, B, 1)

SPECS = [
    "none",
    "float:dtype=float16",
    "quant:bits=8",
    "quant:bits=4",
    "quant:bits=2",
    "topk:ratio=0.5",
    "topk:ratio=0.2",
    "topk:ratio=0.1",
    "topk:ratio=0.05",
    "topk:ratio=0.01",
    "randtopk:ratio=0.2",
    "randtopk:ratio=0.1",
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
    "adc:xi=0.01+quant:bits=2",
    "adc:xi=0.1+quant:bits=8",
    "topk:ratio=0.1+quant:bits=8",
    "topk:ratio=0.1+quant:bits=2",
    "bottleneck:ratio=0.1+quant:bits=4",
    "splitfc:keep=0.5",
    "splitfc:keep=0.2",
    "splitfc:keep=0.05",
]


def log2_binomial(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def _width(stage: Method, backward: bool) -> int:
    """Bits per value of a terminal stage."""
    name = stage.registry_name
    if name == "quant":
        return stage.grad_bits if backward else stage.config["bits"]  # type: ignore[attr-defined]
    return {"float32": 32, "float16": 16, "bfloat16": 16}[stage.config["dtype"]]


def _stage_bits(stage: Method, batch: int, shape: tuple[int, ...], training: bool) -> tuple[float, int, bool]:
    """(information bits of this stage's own fields, batch of what it passes on, known formula)."""
    name, C = stage.registry_name, CUT.num_classes
    if name in ("none", "bottleneck", "tokenprune"):
        return 0.0, batch, True
    if name in ("topk", "randtopk"):
        D = math.prod(shape)
        return batch * log2_binomial(D, stage.k(D)), batch, True  # type: ignore[attr-defined]
    if name in ("adc", "adc-batch", "adc-token"):
        if not training:
            return 0.0, batch, True
        T = stage.clusters(batch)  # type: ignore[attr-defined]
        return batch * math.ceil(math.log2(C)) + (batch * math.ceil(math.log2(T)) if T < batch else 0), T, True
    if name == "c3sl":
        R = stage.config["R"]
        return (32.0 if batch % R else 0.0), -(-batch // R), True
    if name == "tome":  # merged-token sizes in [1, n], each at ceil(log2 n) bits; none without proportional
        if not stage.config["proportional"]:
            return 0.0, batch, True
        n = shape[0]
        return float(batch * (stage.tokens(n) - stage.prefix) * stage._size_bits(n)), batch, True  # type: ignore[attr-defined]
    if name == "lowrank":  # the basis Q: d x rank values at their stated width, per sample
        width = 8 * torch.empty((), dtype=stage.dtype).element_size()  # type: ignore[attr-defined]
        return float(batch * shape[1] * stage.config["rank"] * width), batch, True
    nbytes, next_n = stage.analytic_forward(batch, shape, training)
    return 8.0 * nbytes, next_n, False


def _terminal_bits(stage: Method, batch: int, shape: tuple[int, ...], backward: bool) -> tuple[float, bool]:
    if stage.registry_name == "fedlite":  # codes at log2 l bits per sub-vector, the codebook at float32
        L, s, R = stage.config["l"], stage.config["subdim"], stage.config["groups"]
        fwd = batch * stage.q(shape) * math.log2(L) + 32 * R * L * s  # type: ignore[attr-defined]
        return (32.0 * batch * math.prod(shape) if backward else fwd), True  # the paper's float32 gradient
    if stage.registry_name == "splitfc":  # kept set, (lo, hi) + a width in [0, 16] per kept column, the codes
        D = stage.columns(shape)  # type: ignore[attr-defined]
        K = stage.k(D)  # type: ignore[attr-defined]
        bits = stage.grad_bits if backward else stage.config["bits"]  # type: ignore[attr-defined]
        codes = stage.rows(batch, shape) * stage.budget(K, bits)  # type: ignore[attr-defined]
        return (0.0 if backward else log2_binomial(D, K)) + K * (64 + math.log2(17)) + codes, True
    if stage.registry_name not in ("quant", "float"):
        nbytes = stage.analytic_backward(batch, shape) if backward else stage.analytic_forward(batch, shape, True)[0]
        return 8.0 * nbytes, False
    bits = batch * math.prod(shape) * _width(stage, backward)
    if stage.registry_name == "quant":
        bits += 64 * math.prod(stage._groups((batch, *shape)))  # type: ignore[attr-defined]
    return float(bits), True


def information_bits(pipe: Pipeline, batch: int, training: bool = True) -> tuple[float, float, bool]:
    """(forward bits, backward bits, every stage's formula known) of one step, from the formulas."""
    fwd, known = 0.0, True
    shapes = pipe.input_shapes(training)
    n = batch
    labels_sent = False
    for i, stage in enumerate(pipe.stages):
        if stage.terminal:
            f, k1 = _terminal_bits(stage, n, shapes[i], backward=False)
            b, k2 = _terminal_bits(stage, n, shapes[i], backward=True) if training else (0.0, True)
            fwd += f
            known &= k1 and k2
            break
        bits, n, k = _stage_bits(stage, n, shapes[i], training)
        fwd, known = fwd + bits, known and k
        labels_sent |= stage.sends_labels(training)
    if training and not labels_sent:
        fwd += batch * math.ceil(math.log2(pipe.cut.num_classes))  # type: ignore[union-attr]
    return fwd, b, known


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------
def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, N_TOKENS, DIM, generator=g)
    attention = torch.softmax(3 * torch.randn(B, N_TOKENS, generator=g), dim=1)
    y = torch.randint(0, CLASSES, (B,), generator=g)
    return h, attention, y


def messages(spec: str, data: tuple[torch.Tensor, ...]) -> tuple[Pipeline, bytes, bytes]:
    """(pipeline, forward bytes, backward bytes) of one training step at the paper's shapes."""
    h, attention, y = data
    pipe = Pipeline.from_spec(spec)
    pipe.setup(CUT)
    ctx = Context(True, CUT, 0, torch.Generator().manual_seed(0), labels=y, attention=attention)
    msg, _ = pipe.encode_forward(h.requires_grad_(False), ctx)
    fwd = pipe.pack(msg)
    sctx = Context(True, CUT, 0, torch.Generator().manual_seed(1))
    _, leaf, _ = pipe.decode_forward(pipe.unpack(fwd), sctx)
    grad = torch.randn(leaf.shape, generator=torch.Generator().manual_seed(2))
    return pipe, fwd, pipe.pack(pipe.encode_backward(grad, sctx))


def measure(spec: str, data: tuple[torch.Tensor, ...], reps: int) -> dict[str, Any]:
    pipe, fwd, bwd = messages(spec, data)
    info_f, info_b, known = information_bits(pipe, B)
    h, attention, y = data

    def encode() -> bytes:
        ctx = Context(True, CUT, 0, torch.Generator().manual_seed(0), labels=y, attention=attention)
        return pipe.pack(pipe.encode_forward(h, ctx)[0])

    def decode() -> None:
        pipe.decode_forward(pipe.unpack(fwd), Context(True, CUT, 0, torch.Generator().manual_seed(1)))

    return {
        "spec": spec,
        "fwd": len(fwd),
        "bwd": len(bwd),
        "info_fwd": info_f / 8,
        "info_bwd": info_b / 8,
        "known": known,
        "t_enc": _median(encode, reps),
        "t_dec": _median(decode, reps),
    }


def _median(fn: Any, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def table(rows: list[dict[str, Any]], base: dict[str, dict[str, Any]]) -> str:
    head = (
        "| method | fwd wire B | fwd information B | fwd wire/info | bwd wire B | bwd information B | "
        "bwd wire/info | encode ms | decode ms |"
    )
    if base:
        head += " base fwd wire/info |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        star = "" if r["known"] else " *"
        line = (
            f"| `{r['spec']}`{star} | {r['fwd']:,} | {r['info_fwd']:,.1f} | {r['fwd'] / r['info_fwd']:.5f} | "
            f"{r['bwd']:,} | {r['info_bwd']:,.1f} | {r['bwd'] / r['info_bwd']:.5f} | "
            f"{1e3 * r['t_enc']:.1f} | {1e3 * r['t_dec']:.1f} |"
        )
        if base:
            b = base.get(r["spec"])
            line += f" {b['fwd'] / r['info_fwd']:.3f} |" if b else " - |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    ap.add_argument("--only", nargs="*", default=None, help="method specs instead of the default list")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    ap.add_argument("--json", default=None, help="also write the raw rows as JSON")
    ap.add_argument("--compare", default=None, help="JSON rows of an earlier version (vs-base columns)")
    args = ap.parse_args()
    base = {r["spec"]: r for r in json.loads(Path(args.compare).read_text())} if args.compare else {}
    torch.set_num_threads(1)
    data = inputs()
    t0 = time.perf_counter()
    rows = []
    for spec in args.only or SPECS:
        try:
            rows.append(measure(spec, data, args.reps))
        except Exception as exc:  # an earlier version may not know a spec (baseline runs)
            print(f"{spec}: skipped ({type(exc).__name__}: {exc})", flush=True)
            continue
        r = rows[-1]
        print(f"{spec:40s} fwd {r['fwd'] / r['info_fwd']:.5f}  bwd {r['bwd'] / r['info_bwd']:.5f}", flush=True)
    worst = [r["spec"] for r in rows if max(r["fwd"] / r["info_fwd"], r["bwd"] / r["info_bwd"]) > TARGET]
    cmd = "python benchmarks/wire_limit.py " + " ".join(sys.argv[1:])
    doc = "\n".join(
        [
            "# Wire bytes against information content at the paper's shapes",
            "",
            "Produced by `benchmarks/wire_limit.py` (its docstring defines the information column); "
            "do not edit by hand.",
            "",
            f"- command: `{cmd.strip()}`",
            f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
            f"torch {torch.__version__}, 1 thread, {os.cpu_count()} logical cores, "
            f"load average at start {os.getloadavg()[0]:.2f}; run took {time.perf_counter() - t0:.0f} s",
            f"- shapes: B = {B}, n = {N_TOKENS}, d = {DIM}, {CLASSES} classes; Gaussian activations and gradients",
            "",
            "- vs base: the same measurement of "
            + (f"`{args.compare}` (an earlier tree, see the docstring)" if base else "-")
            + "; encode/decode time against it, side by side: [wire-cost.md](wire-cost.md)",
            "",
            table(rows, base),
            "",
            f"- wire ≤ {TARGET} × information: "
            + ("met by every row" if not worst else "NOT met by " + ", ".join(f"`{s}`" for s in worst)),
            "",
        ]
    )
    print(doc)
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
    if args.out:
        Path(args.out).write_text(doc)


if __name__ == "__main__":
    main()
