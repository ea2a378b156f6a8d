"""Mixed precision: bf16/fp16 autocast on both halves, the wire dtype explicit and measured.

bf16 autocast runs on the CPU, so it is tested here against fp32 on a tiny model; fp16 autocast
and its gradient scalers run on the CPU too (slowly, but a step is enough)."""

from __future__ import annotations

import math

import pytest
import torch
from _harness import BATCH, CLASSES, SPLIT, TINY, one_thread  # noqa: F401 (module-wide fixture)
from click.testing import CliRunner
from timm.models.vision_transformer import VisionTransformer

from adcbench.cli import main
from adcbench.core.method import Cut
from adcbench.core.pipeline import Pipeline
from adcbench.core.records import read_records
from adcbench.errors import ParamError
from adcbench.model.split import cut_shape, split_vit
from adcbench.report.leaderboard import runs_table, summarize
from adcbench.train.config import PRECISIONS
from adcbench.train.loop import RunConfig, build_parties
from adcbench.train.roles import Client, Server
from adcbench.wire import Message

CPU = torch.device("cpu")


def _one_step(precision: str, wire: str) -> tuple[float, torch.Tensor, torch.Tensor, int]:
    """One step of `none` on the tiny ViT: (loss, decoded server gradient, client weight gradients,
    forward message length)."""
    torch.manual_seed(0)
    vit = VisionTransformer(num_classes=CLASSES, **TINY)
    pipeline = Pipeline.from_spec("none", wire)
    client_net, server_net = split_vit(vit, SPLIT)
    n, d = cut_shape(client_net, TINY["img_size"], TINY["in_chans"])
    cut = Cut(n, d, CLASSES, BATCH, 1)
    pipeline.setup(cut)
    dtype = PRECISIONS[precision]
    client = Client(client_net, pipeline, cut, 1e-3, 0, CPU, dtype)
    server = Server(server_net, pipeline, cut, 1e-3, 0, CPU, dtype)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, 1, 8, 8, generator=g), torch.arange(BATCH) % CLASSES
    fwd = client.forward(x, y, 0)
    bwd, loss = server.train_step(fwd, 0)
    client.backward(bwd)
    grad = Message.decode(bwd)["1.g"]
    assert isinstance(grad, torch.Tensor)
    weights = torch.cat([w.grad.flatten() for w in client_net.parameters() if w.grad is not None])
    return loss, grad.float(), weights, len(fwd)


def _close(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(cosine similarity, norm ratio) of two gradients."""
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)), float(a.norm() / b.norm())


@pytest.mark.parametrize("precision,wire", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_half_precision_step_is_close_to_fp32(precision: str, wire: str) -> None:
    loss32, grad32, weights32, len32 = _one_step("fp32", "float32")
    loss, grad, weights, length = _one_step(precision, wire)
    # Tolerances: bf16 keeps 8 mantissa bits (relative error ~4e-3 per op), fp16 11.
    assert abs(loss - loss32) < 0.02 * loss32
    for a, b in ((grad, grad32), (weights, weights32)):
        cos, ratio = _close(a, b)
        assert cos > 0.99 and abs(ratio - 1) < 0.05, (cos, ratio)  # fp16: unscaled (not 65536x)
    # What crossed the wire: half the payload bytes of float32, the labels and framing unchanged.
    assert len32 - length == 2 * BATCH * 17 * 32


@pytest.mark.slow
def test_bf16_trains_digits_through_the_cli_with_the_wire_dtype_recorded(tmp_path) -> None:
    args = ["run", "--method", "none", "--task", "digits", "--batch-size", "16", "--max-steps", "3", "--quiet"]
    r = CliRunner().invoke(main, [*args, "--precision", "bf16", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    (rec,) = read_records(tmp_path / "digits.jsonl")
    assert rec["precision"] == {
        "compute": "bf16",
        "wire_dtype": "bfloat16",
        "sent_fwd": ["bfloat16"],
        "sent_bwd": ["bfloat16"],
    }
    assert rec["train"]["precision"] == "bf16"  # part of the config hash
    B, n, d = rec["train"]["batch_size"], rec["cut"]["tokens"], rec["cut"]["dim"]
    analytic = rec["analytic_bytes_per_step"]
    assert analytic == {"fwd": 2 * B * n * d + B * 4 // 8, "bwd": 2 * B * n * d}  # bf16 payload, 4-bit labels
    for way in ("fwd", "bwd"):
        parts = rec["bytes"][f"breakdown_{way}"]
        assert parts["payload"] + parts["side"] + parts["labels"] == 3 * analytic[way]
    assert math.isfinite(rec["final"]["train_loss"])


def test_wire_dtype_is_separate_from_the_compute_precision() -> None:
    base = dict(method="none", task="digits", out=None, progress=False)
    fp32 = build_parties(RunConfig(**base))
    bf16_fp32_wire = build_parties(RunConfig(**base, precision="bf16", wire_dtype="float32"))
    assert bf16_fp32_wire.pipeline.analytic_bytes(8) == fp32.pipeline.analytic_bytes(8)
    assert bf16_fp32_wire.settings["precision"] == "bf16" and "precision" not in fp32.settings
    # An explicit wire dtype the method cannot take is refused before any data loads.
    with pytest.raises(ParamError, match="sets its own wire encoding"):
        build_parties(RunConfig(**{**base, "method": "quant"}, wire_dtype="float16"))
    # auto leaves a method's own terminal alone: quant's codes are what crosses.
    assert build_parties(RunConfig(**{**base, "method": "quant"}, precision="bf16")).pipeline.stages[-1].spec == "quant"


def test_leaderboard_keeps_precisions_apart() -> None:
    def record(precision: str | None, per_sample: float) -> dict:
        train = {"batch_size": 8} | ({"precision": precision} if precision else {})
        return {
            "task": "digits",
            "method": "none",
            "config_hash": precision or "fp32",
            "seed": 0,
            "status": "completed",
            "history": [{"step": 1}],
            "final": {"acc": 0.5, "acc_compressed": 0.5, "epoch": 1},
            "steps": 1,
            "train": train,
            "bytes": {"per_sample_fwd": per_sample, "per_sample_bwd": per_sample, "fwd": 1, "bwd": 1},
            "wall_s": 1.0,
        }

    table = summarize(runs_table([record(None, 4000.0), record("bf16", 2000.0)])).set_index("method")
    assert table.loc["none", "xi_measured"] == 1.0
    assert table.loc["none @bf16", "xi_measured"] == 0.5  # baselined on fp32 none, not averaged with it
