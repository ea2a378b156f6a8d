"""Step time of split learning at the paper's scale: DeiT-T/S at 224 px, B = 128, fp32 vs bf16.

One step is what `adcbench run` does per batch: the client half (blocks [0, l)), the method's
encoding, the forward bytes, the server half with loss, backward and Adam, the gradient bytes and
the client's backward and Adam -- the real roles and wire format, through the in-process loopback.
Inputs are random 224 px images already on the device (the data loader is measured separately by
`benchmarks/task_throughput.py --workers ...`). Weights are random (timm, no download).

    python benchmarks/gpu_step_time.py [--archs deit_tiny_patch16_224,deit_small_patch16_224]
        [--precisions fp32,bf16] [--methods none,adc] [--batch 128] [--steps 20]

writes docs/benchmarks/gpu-step-time.md with the GPU named. Without a CUDA device it measures
nothing and writes nothing; `--device cpu --batch 2 --steps 1 --no-write` only checks the script.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import timm
import torch

from adcbench.core.method import Cut
from adcbench.core.pipeline import Pipeline
from adcbench.model.split import cut_shape, split_vit
from adcbench.train.config import PRECISIONS, RunConfig, wire_dtype
from adcbench.train.roles import Client, Server

REPO = Path(__file__).resolve().parents[1]
CLASSES = 100  # CIFAR-100, the paper's main task


def step_time(arch: str, precision: str, method: str, args: argparse.Namespace) -> tuple[float, int]:
    """(seconds per step, forward bytes per step)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    vit = timm.create_model(arch, pretrained=False, num_classes=CLASSES)
    dtype = PRECISIONS[precision]
    pipeline = Pipeline.from_spec(method, wire_dtype(RunConfig(precision=precision)))  # auto
    client_net, server_net = split_vit(vit, args.split, capture_attention=pipeline.needs_attention)
    client_net.to(device), server_net.to(device)
    n, d = cut_shape(client_net, 224, 3)
    cut = Cut(n, d, CLASSES, args.batch, client_net.num_prefix_tokens)
    pipeline.setup(cut)
    for side in ("client", "server"):
        for m in pipeline.modules(side):
            m.to(device)
    client = Client(client_net, pipeline, cut, 1e-4, 0, device, dtype)
    server = Server(server_net, pipeline, cut, 1e-4, 0, device, dtype)
    x = torch.randn(args.batch, 3, 224, 224, device=device)
    y = torch.randint(0, CLASSES, (args.batch,), device=device)

    def step() -> int:
        fwd = client.forward(x, y, 0)
        bwd, _ = server.train_step(fwd, 0)
        client.backward(bwd)
        return len(fwd)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        nbytes = step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / args.steps, nbytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="deit_tiny_patch16_224,deit_small_patch16_224")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--methods", default="none,adc")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--split", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "gpu-step-time.md")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured, nothing written", file=sys.stderr)
        return 0
    rows = []
    for arch in args.archs.split(","):
        for method in args.methods.split(","):
            base = None
            for precision in args.precisions.split(","):
                seconds, nbytes = step_time(arch, precision, method, args)
                base = base or seconds
                print(arch, method, precision, f"{seconds * 1e3:.1f} ms", nbytes, file=sys.stderr)
                rows.append(
                    f"| {arch} | `{method}` | {precision} | {seconds * 1e3:,.1f} | {base / seconds:.2f} | "
                    f"{args.batch / seconds:,.0f} | {nbytes:,} |"
                )
    if args.no_write:
        return 0
    hw = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "CPU"
    cmd = "python benchmarks/gpu_step_time.py" + "".join(f" {a}" for a in sys.argv[1:])
    lines = [
        "# Split-learning step time on a GPU",
        "",
        f"Produced by `{cmd}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- Device: {hw}; torch {torch.__version__}; batch {args.batch}, 224 px, split after block {args.split};"
        f" {args.steps} timed steps after {args.warmup} warm-up steps; inputs already on the device.",
        "- speed-up: against the first precision of the same model and method, measured side by side.",
        "",
        "| model | method | precision | ms/step | speed-up | img/s | fwd bytes/step |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
