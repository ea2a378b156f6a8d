"""Encode/decode time of every method against an earlier tree, measured side by side (issue 8: <= 1.20x).

    python benchmarks/wire_cost.py [--base 3bccf4c] [--reps 15] [--only SPEC ...] [--out FILE] [--json FILE]

The baseline is the tree at `--base` (default 3bccf4c: the last commit before wire v2, i.e. before
gap-coded positions, packed labels and the receiver's validation), unpacked with `git archive`
into a temporary folder; where that tree keeps its plugins only at the top level (`methods/`, as
3bccf4c does) they are linked in as its `adcbench.methods`, so the baseline runs its own methods.

Two worker processes run this file with `--worker`: one imports the current tree's adcbench, the
other the baseline's (PYTHONPATH first). Each builds the same seeded inputs at the paper's shapes
(B = 128, n = 197, d = 192, 100 classes: Gaussian activations, softmax attention rows, Gaussian
gradient) and one pipeline per method, at one torch thread. The parent then asks for one timed
call at a time, alternating which tree goes first, so both trees see the same load; only one
process computes at any moment. Per repetition it takes the ratio current / baseline; the table
shows the median ratio and the interquartile range of those ratios, and the median milliseconds.

Timed operations (each a full pass, wall time):
- enc: client `encode_forward` + `pack` (method encode + wire serialize);
- dec: server `unpack` + `decode_forward` (wire parse and validation + method decode);
- bwd: server `encode_backward` + `pack`, then client `unpack` + `decode_backward`;
- link: `Loopback().send` + `recv` of the forward message (meter breakdown and delivery): the
  copies and CRC checks between the client's encode and the server's decode (issue 11 item 5).
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
import time
from pathlib import Path
from typing import Any

B, N_TOKENS, DIM, CLASSES = 128, 197, 192, 100
OPS = ("enc", "dec", "bwd", "link")
BUDGET = 1.20
ROOT = Path(__file__).resolve().parent.parent

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
    "bottleneck:ratio=0.1",
    "c3sl:R=8",
    "tokenprune:ratio=0.25",
    "adc:xi=0.5",
    "adc:xi=0.1",
    "adc:xi=0.01",
    "adc:xi=0.1,labels=soft",
    "adc-batch:xi=0.1",
    "adc-token:xi=0.1",
    "adc:xi=0.1+quant:bits=8",
    "topk:ratio=0.1+quant:bits=8",
    "bottleneck:ratio=0.1+quant:bits=4",
    "quant:bits=8+zstd",
]


# --------------------------------------------------------------------------------------------
# worker: one tree's adcbench, driven line by line over stdin/stdout
# --------------------------------------------------------------------------------------------
class Worker:
    def __init__(self) -> None:
        import torch

        from adcbench.core.method import Context, Cut

        torch.set_num_threads(1)
        self.torch, self.Context = torch, Context
        self.cut = Cut(N_TOKENS, DIM, CLASSES, B, 1)
        g = torch.Generator().manual_seed(0)
        self.h = torch.randn(B, N_TOKENS, DIM, generator=g)
        self.attention = torch.softmax(3 * torch.randn(B, N_TOKENS, generator=g), dim=1)
        self.y = torch.randint(0, CLASSES, (B,), generator=g)
        self.pipes: dict[str, Any] = {}

    def _ctx(self, client: bool, seed: int) -> Any:
        gen = self.torch.Generator().manual_seed(seed)
        if client:
            return self.Context(True, self.cut, 0, gen, labels=self.y, attention=self.attention)
        return self.Context(True, self.cut, 0, gen)

    def setup(self, spec: str) -> dict[str, Any]:
        from adcbench.core.pipeline import Pipeline

        pipe = Pipeline.from_spec(spec)
        pipe.setup(self.cut)
        state: dict[str, Any] = {"pipe": pipe}
        self.pipes[spec] = state
        cctx = self._ctx(True, 0)
        state["fwd"] = pipe.pack(pipe.encode_forward(self.h, cctx)[0])
        sctx = self._ctx(False, 1)
        _, leaf, _ = pipe.decode_forward(pipe.unpack(state["fwd"]), sctx)
        state["grad"] = self.torch.randn(leaf.shape, generator=self.torch.Generator().manual_seed(2))
        state["cctx"], state["sctx"] = cctx, sctx
        state["bwd"] = pipe.pack(pipe.encode_backward(state["grad"], sctx))
        for op in OPS:  # warm-up
            self.run(spec, op)
        return {"fwd": len(state["fwd"]), "bwd": len(state["bwd"])}

    def run(self, spec: str, op: str) -> float:
        s = self.pipes[spec]
        pipe = s["pipe"]
        t0 = time.perf_counter()
        if op == "enc":
            pipe.pack(pipe.encode_forward(self.h, self._ctx(True, 0))[0])
        elif op == "dec":
            pipe.decode_forward(pipe.unpack(s["fwd"]), self._ctx(False, 1))
        elif op == "bwd":
            data = pipe.pack(pipe.encode_backward(s["grad"], s["sctx"]))
            pipe.decode_backward(pipe.unpack(data), s["cctx"])
        elif op == "step":
            self._step()
        else:
            from adcbench.transport.loopback import Loopback

            link = Loopback()
            link.send("fwd", s["fwd"])
            link.recv("fwd")
        return time.perf_counter() - t0

    def _step(self) -> None:
        """Forward + backward of the whole DeiT-Tiny (random init) on the batch, no wire: the
        denominator of the `none` step share (the same timm code in both trees)."""
        if not hasattr(self, "net"):
            import timm

            self.torch.manual_seed(0)
            self.net = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=CLASSES)
            self.x = self.torch.randn(B, 3, 224, 224, generator=self.torch.Generator().manual_seed(3))
        self.net.zero_grad(set_to_none=True)
        self.torch.nn.functional.cross_entropy(self.net(self.x), self.y).backward()


def worker_main() -> None:
    w = Worker()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            out: Any = w.setup(cmd["spec"]) if cmd["op"] == "setup" else w.run(cmd["spec"], cmd["op"])
        except Exception as exc:  # an earlier tree may not know a spec
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------
class Peer:
    def __init__(self, tree: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),  # not the checkout: `import adcbench` must come from PYTHONPATH
        )
        assert json.loads(self._read())["ready"]

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def ask(self, cmd: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._read())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def base_tree(commit: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    if not (into / "adcbench" / "methods").exists():  # later trees keep methods/ at the top level
        (into / "adcbench" / "methods").symlink_to(into / "methods")
    return into


def compare(new: Peer, old: Peer, spec: str, reps: int, ops: tuple[str, ...] = OPS) -> dict[str, Any] | None:
    sizes = {}
    for name, peer in (("new", new), ("old", old)):
        sizes[name] = peer.ask({"op": "setup", "spec": spec})
        if "error" in sizes[name]:
            print(f"{spec}: skipped ({name}: {sizes[name]['error']})", flush=True)
            return None
    times: dict[str, dict[str, list[float]]] = {op: {"new": [], "old": []} for op in ops}
    for rep in range(reps):
        for op in ops:
            order = (new, old) if rep % 2 else (old, new)
            for peer in order:
                times[op]["new" if peer is new else "old"].append(peer.ask({"op": op, "spec": spec}))
    row: dict[str, Any] = {"spec": spec, "sizes": sizes}
    for op in ops:
        ratios = sorted(a / b for a, b in zip(times[op]["new"], times[op]["old"]))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        row[op] = {
            "ratio": statistics.median(ratios),
            "q1": q[0],
            "q3": q[2],
            "new_ms": 1e3 * statistics.median(times[op]["new"]),
            "old_ms": 1e3 * statistics.median(times[op]["old"]),
        }
    return row


def step_share(new: Peer, old: Peer, reps: int, none_row: dict[str, Any]) -> str:
    """The `none` wire path (enc + link + dec + bwd) as a share of a whole-model training step."""
    for peer in (new, old):
        peer.ask({"op": "step", "spec": "none"})  # builds the model; the warm-up step
    step = {"new": [], "old": []}
    for rep in range(reps):
        for peer in (new, old) if rep % 2 else (old, new):
            step["new" if peer is new else "old"].append(peer.ask({"op": "step", "spec": "none"}))
    out = []
    for tree, label in (("old", "base"), ("new", "now")):
        wire_ms = sum(none_row[op][f"{tree}_ms"] for op in OPS)
        step_ms = 1e3 * statistics.median(step[tree])
        out.append(f"{label} {wire_ms:.0f} ms = {100 * wire_ms / step_ms:.2f} % of {step_ms:.0f} ms")
    return (
        "- `none` wire path per training step (enc + link + dec + bwd medians) against a whole "
        f"DeiT-Tiny forward + backward at B = {B} (median of {reps}, interleaved, no wire): " + "; ".join(out)
    )


def table(rows: list[dict[str, Any]]) -> str:
    head = "| method | fwd bytes base -> now |" + "".join(
        f" {op} ms base | {op} ms now | {op} now/base [IQR] |" for op in OPS
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        sz = r["sizes"]
        line = f"| `{r['spec']}` | {sz['old']['fwd']:,} -> {sz['new']['fwd']:,} |"
        for op in OPS:
            o = r[op]
            flag = " **" if o["ratio"] > BUDGET and op != "link" else ""
            line += f" {o['old_ms']:.1f} | {o['new_ms']:.1f} | {o['ratio']:.2f}{flag} [{o['q1']:.2f}-{o['q3']:.2f}] |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="3bccf4c", help="commit of the baseline tree (default: before wire v2)")
    ap.add_argument("--reps", type=int, default=15, help="interleaved repetitions per method and operation")
    ap.add_argument("--only", nargs="*", default=None, help="method specs instead of the default list")
    ap.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    ap.add_argument("--json", default=None, help="also write the raw rows as JSON")
    ap.add_argument("--step-reps", type=int, default=5, help="whole-model steps for the `none` share (0: skip)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main()
        return
    load, t0 = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        new, old = Peer(ROOT), Peer(base_tree(args.base, Path(tmp)))
        rows = []
        for spec in args.only or SPECS:
            row = compare(new, old, spec, args.reps)
            if row is None:
                continue
            rows.append(row)
            print(f"{spec:40s} " + "  ".join(f"{op} {row[op]['ratio']:.2f}" for op in OPS), flush=True)
        none_row = next((r for r in rows if r["spec"] == "none"), None)
        share = step_share(new, old, args.step_reps, none_row) if none_row and args.step_reps else ""
        new.close()
        old.close()
    over = [f"`{r['spec']}` {op}" for r in rows for op in OPS[:3] if r[op]["ratio"] > BUDGET]
    cmd = "python benchmarks/wire_cost.py " + " ".join(sys.argv[1:])
    doc = "\n".join(
        [
            "# Encode/decode time against the wire before v2, side by side",
            "",
            "Produced by `benchmarks/wire_cost.py` (its docstring says what each operation times); do not edit by hand.",
            "",
            f"- command: `{cmd.strip()}`",
            f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
            f"1 torch thread per process, {os.cpu_count()} logical cores, load average at start {load:.2f}; "
            f"run took {time.perf_counter() - t0:.0f} s",
            f"- base: `{args.base}`; shapes B = {B}, n = {N_TOKENS}, d = {DIM}, {CLASSES} classes; "
            f"{args.reps} interleaved repetitions; ratio = median of per-repetition now/base, [IQR] its quartiles",
            "",
            table(rows),
            "",
            f"- enc, dec, bwd ≤ {BUDGET} × base: "
            + ("met by every row" if not over else "NOT met by " + ", ".join(over) + " (marked **)"),
            *([share] if share else []),
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
