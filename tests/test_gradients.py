"""Gradients are exact where the computation is exact, registry-wide.

1. `none`, `float` (float32) and lossless chains: the split model's loss and both halves' parameter
   gradients equal the unsplit ViT's (same weights, same batch) through the real roles and bytes.
2. Every registered method: the gradient the client applies is J^T g for the gradient g it
   decoded (nothing rescales or drops it), and g is the gradient of the compressed computation:
   a central finite difference of the loss *through the real bytes* along the applied gradient
   equals its norm. Finite differences see only forward values, so a backward that is scaled
   wrongly anywhere (a custom autograd rule, a merge that divides by the wrong cluster size, a
   client that applies half of g) fails here, whatever the method.
   A terminal that rounds (`quant`) makes the loss piecewise constant, so there the reference is
   its documented straight-through estimator: the decoded gradient is within half a
   quantization step of the server's exact one (test_decode_fidelity covers the forward).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from _harness import CLASSES, CPU, SPLIT, TINY, Harness, make, one_thread  # noqa: F401 (module-wide fixture)
from timm.models.vision_transformer import VisionTransformer

from adcbench.core.method import METHODS, Context, Cut
from adcbench.core.pipeline import LosslessStage, Pipeline
from adcbench.model.split import cut_shape, split_vit
from adcbench.train.roles import Client, Server

NAMES = METHODS.names()
# Seeds where no discrete choice (top-k support, K-means cluster, kept token) sits so near a tie
# that a step of ~1e-3 flips it; the test detects a flip and says so.
SEEDS = {"tokenprune": 0}
BATCHES = {"topk": 4}  # 16 samples x 544 magnitudes: some k-th/(k+1)-th pair is within 1e-4
EXACT_SPECS = ["none", "float", "float:dtype=float32", "none+zstd", "none+zlib+zstd", "float+zlib"]


def _fd_spec(name: str) -> str | None:
    """A chain of `name` whose loss is differentiable in the client's weights: float32 terminal
    (the default), lossless stages over `none`. None for a rounding terminal (quant)."""
    cls = METHODS.get(name)
    if issubclass(cls, LosslessStage):
        return f"none+{name}"
    if name == "float":
        return "float:dtype=float32"
    if name == "bottleneck":  # ReLU kinks at many tokens bias a finite difference; linear is smooth
        return "bottleneck:depth=1"
    if name == "lowrank":  # by design its backward projects onto the sent basis Q (PowerSGD-style), not
        return None  # d(PQ^T)/dx: tested as G Q Q^T in tests/test_methods_new.py
    if cls.terminal:
        return None
    if name == "entropy-bottleneck":  # its entropy-code terminal rounds and adds the client's rate term
        return None  # (J^T g + lambda dR/dx): tested in tests/test_entropy_bottleneck.py
    return name


# --------------------------------------------------------------------------------------------
# 1. exact methods == the unsplit ViT
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", EXACT_SPECS)
def test_lossless_split_equals_unsplit_vit(spec: str) -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(num_classes=CLASSES, **TINY)
    ref = copy.deepcopy(vit)
    pipeline = Pipeline.from_spec(spec)
    client_net, server_net = split_vit(vit, SPLIT, capture_attention=pipeline.needs_attention)
    n, d = cut_shape(client_net, TINY["img_size"], TINY["in_chans"])
    cut = Cut(n, d, CLASSES, 16, client_net.num_prefix_tokens)
    pipeline.setup(cut)
    client = Client(client_net, pipeline, cut, 1e-3, 0, CPU)
    server = Server(server_net, pipeline, cut, 1e-3, 0, CPU)
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(16) % CLASSES

    bwd, loss = server.train_step(client.forward(x, y, 0), 0)
    client.backward(bwd)  # the optimizers have stepped; .grad still holds this step's gradients

    ref_loss = F.cross_entropy(ref(x), y)
    ref_loss.backward()
    assert abs(loss - ref_loss.item()) <= 1e-6 * max(1.0, abs(ref_loss.item()))
    grads = {name: p.grad for name, p in ref.named_parameters()}
    split_grads = {f"{name}": p.grad for name, p in client_net.vit.named_parameters() if p.grad is not None}
    for name, p in server_net.named_parameters():  # the server's blocks count from the cut
        parts = name.split(".")
        if parts[0] == "blocks":
            parts[1] = str(int(parts[1]) + SPLIT)
        assert ".".join(parts) not in split_grads
        split_grads[".".join(parts)] = p.grad
    client_side = [k for k in split_grads if k.startswith(("patch_embed", "cls_token", "pos_embed", "blocks.0."))]
    assert client_side and any(k.startswith("head") for k in split_grads), "both halves are compared"
    for name, g in split_grads.items():
        assert g is not None and name in grads, name
        torch.testing.assert_close(g, grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # every parameter of the unsplit model got its gradient from one of the halves
    assert {k for k, g in grads.items() if g is not None} <= set(split_grads)


# --------------------------------------------------------------------------------------------
# 2. registry-wide: the applied gradient is the gradient of the compressed computation
# --------------------------------------------------------------------------------------------
def _client_params(h: Harness) -> list[torch.nn.Parameter]:
    return [p for m in (h.client.net, *h.pipeline.modules("client")) for p in m.parameters() if p.requires_grad]


def _compressed_loss(h: Harness, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[float, bytes]:
    """The server's loss on the bytes the client sends now (nothing steps), and the message's
    side information + labels (to check that a perturbation kept the same discrete choices:
    supports, cluster ids, soft labels -- these depend only on them)."""
    h.client.generator.manual_seed(seed)
    with torch.no_grad():
        data = h.client.forward(x, y, 0)
        ctx = Context(True, h.cut, 0, torch.Generator().manual_seed(seed + 1))
        server_in, _, targets = h.pipeline.decode_forward(h.pipeline.unpack(data), ctx)
        loss = F.cross_entropy(h.server.net(server_in), targets)
    msg = h.pipeline.unpack(data)
    discrete = b"".join(
        name.encode() + (f.value.numpy().tobytes() if isinstance(f.value, torch.Tensor) else bytes(f.value))
        for name, f in sorted(msg.fields.items())
        if f.category.name != "PAYLOAD"
    )
    return loss.item(), discrete


def _applied_step(h: Harness, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One real step through bytes. Returns the gradients the client applied to its parameters,
    and J^T g computed here from the gradient message (g as the client decodes it)."""
    h.client.generator.manual_seed(seed)
    h.server.generator.manual_seed(seed + 1)
    fwd = h.client.forward(x, y, 0)
    bwd, _ = h.server.train_step(fwd, 0)
    carrier, ctx = h.client._carrier, h.client._ctx
    g = h.pipeline.decode_backward(h.pipeline.unpack(bwd), ctx)
    params = _client_params(h)
    expected = torch.autograd.grad(carrier, params, g, retain_graph=True, allow_unused=True)
    h.client.backward(bwd)
    applied = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    want = [e if e is not None else torch.zeros_like(p) for e, p in zip(expected, params)]
    for a, w in zip(applied, want):
        torch.testing.assert_close(a, w, rtol=1e-5, atol=1e-8, msg="client applies J^T g of the decoded g")
    return applied, g


@pytest.mark.parametrize("name", NAMES)
def test_applied_gradient_is_the_compressed_gradient(name: str) -> None:
    spec = _fd_spec(name)
    if spec is None:
        pytest.skip(
            f"{name} rounds its output or projects its gradient: see test_rounding_terminal_gradient_within_half_step"
        )
    seed = SEEDS.get(name, 3)
    h, twin = make(spec, seed=seed), make(spec, seed=seed)  # same weights; the twin takes the step
    x, y = h.batch(BATCHES.get(name, 16), seed=seed)
    params = _client_params(h)
    theta = [p.detach().clone() for p in params]
    applied, _ = _applied_step(twin, x, y, seed)
    norm = torch.sqrt(sum((a.double() ** 2).sum() for a in applied)).item()
    assert norm > 0, "the gradient reaches the client"

    # Step along the unit applied gradient, sized so the loss moves by ~1e-4 (fp32 noise is
    # ~1e-6), at two sizes: a discrete choice that flips (a support, a cluster, a kept token
    # set) between the two shows up as disagreement, and is checked for in the bytes too.
    _, base_choice = _restore_and_loss(h, params, theta, None, 0.0, x, y, seed)
    for eps in (3e-4 / min(1.0, norm), 1e-4 / min(1.0, norm)):
        lp, choice_p = _restore_and_loss(h, params, theta, applied, eps / norm, x, y, seed)
        lm, choice_m = _restore_and_loss(h, params, theta, applied, -eps / norm, x, y, seed)
        assert choice_p == base_choice == choice_m, "the perturbation changed a discrete choice; pick another seed"
        fd = (lp - lm) / (2 * eps)
        assert fd == pytest.approx(norm, rel=0.05), (
            f"{spec} eps={eps:.2g}: d loss/d t = {fd:.5g}, |applied| = {norm:.5g}"
        )


def _restore_and_loss(h, params, theta, direction, scale, x, y, seed) -> tuple[float, bytes]:
    with torch.no_grad():
        for i, (p, t) in enumerate(zip(params, theta)):
            p.copy_(t if direction is None else t + scale * direction[i])
    return _compressed_loss(h, x, y, seed)


@pytest.mark.parametrize("spec", ["quant", "quant:bits=4,granularity=token", "quant:bits=3,grad_bits=6"])
def test_rounding_terminal_gradient_within_half_step(spec: str) -> None:
    """quant's backward is its straight-through estimator: J^T of the dequantized server gradient,
    which is within half a step of each scale group of the exact one."""
    h = make(spec, seed=1)
    x, y = h.batch(seed=1)
    h.client.generator.manual_seed(1)
    fwd = h.client.forward(x, y, 0)
    ctx = Context(True, h.cut, 0, torch.Generator().manual_seed(2))
    server_in, leaf, targets = h.pipeline.decode_forward(h.pipeline.unpack(fwd), ctx)
    F.cross_entropy(h.server.net(server_in), targets).backward()
    exact = leaf.grad
    _, g = _applied_step(h, x, y, 1)
    stage = h.pipeline.stages[-1]
    levels = (1 << stage.grad_bits) - 1
    rows_exact, rows_g = stage._rows(exact), stage._rows(g)
    step = (rows_exact.amax(1, keepdim=True) - rows_exact.amin(1, keepdim=True)) / levels
    err = (rows_g - rows_exact).abs()
    assert bool((err <= step / 2 + 1e-6 * rows_exact.abs().amax()).all())
    assert float(err.max()) > 0, "a rounding terminal is not exact (else this test tests nothing)"
