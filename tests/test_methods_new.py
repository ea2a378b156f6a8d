"""Focused tests of the methods added for issue 12 (fedlite, tome, lowrank, entropy-bottleneck):
what each one computes, beyond the registry-wide contract in test_contract.py."""

from __future__ import annotations

import math

import pytest
import torch
from _harness import make, one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import Context, Cut
from adcbench.core.pipeline import Pipeline
from adcbench.errors import ParamError, WireFormatError
from adcbench.wire import Message, bits_for, breakdown

DEIT_T = Cut(tokens=197, dim=192, num_classes=100, batch_size=128)


def _ctx(training: bool = True, seed: int = 0) -> Context:
    return Context(training, DEIT_T, 0, torch.Generator().manual_seed(seed))


def _pipe(spec: str, cut: Cut = DEIT_T) -> Pipeline:
    p = Pipeline.from_spec(spec)
    p.setup(cut)
    return p


# --------------------------------------------------------------------------------------------
# fedlite
# --------------------------------------------------------------------------------------------
def test_fedlite_paper_shapes_and_formula() -> None:
    # The ADC authors' q = 591 is subdim 64 at DeiT-T (197·192 / 64).
    p = _pipe("fedlite:l=32,subdim=64")
    stage = p.stages[0]
    assert stage.q((197, 192)) == 591
    fwd, bwd = p.analytic_bytes(128)
    assert fwd == math.ceil(128 * 591 * 5 / 8) + 4 * 32 * 64 + 128 * 7 // 8  # codes + codebook + 7-bit labels
    assert bwd == 4 * 128 * 197 * 192  # the paper's downlink: the uncompressed gradient
    A, q = 197 * 192, 591  # the ADC authors' charged ratio, for --budget-accounting nominal
    want = 0.5 * ((32 * A * 32 / q + 128 * q * 5) / (32 * A * 128) + 32 * A * 32 / (32 * A * 128 * q))
    assert stage.nominal_ratio() == pytest.approx(want)


def test_fedlite_codes_index_the_codebook_and_kmeans_helps() -> None:
    cut = Cut(tokens=4, dim=8, num_classes=10, batch_size=8)
    x = torch.randn(8, 4, 8, generator=torch.Generator().manual_seed(0))
    errs = []
    for iters in (1, 20):
        p = _pipe(f"fedlite:l=5,subdim=4,iters={iters}", cut)
        fields, _ = p.stages[0].encode_forward(x, Context(True, cut, 0, torch.Generator().manual_seed(1)))
        assert fields["codes"].bits == bits_for(5) == 3 and tuple(fields["codes"].value.shape) == (8, 8)
        decoded = {k: f.value for k, f in fields.items()}
        z = p.stages[0].decode_forward(decoded, None, Context(True, cut))
        cb, codes = decoded["codebook"][0], decoded["codes"]
        assert torch.equal(z.reshape(8, 8, 4), cb[codes])  # each sub-vector is its codeword
        errs.append(float((z - x).pow(2).sum()))
    assert errs[1] < errs[0], "Lloyd iterations reduce the quantization error"


def test_fedlite_groups_have_their_own_codebooks() -> None:
    cut = Cut(tokens=4, dim=8, num_classes=10, batch_size=8)
    x = torch.randn(8, 4, 8)
    x[:, 2:] += 100.0  # positions of the second group live far away from the first
    stage = _pipe("fedlite:l=4,subdim=4,groups=2", cut).stages[0]
    fields, _ = stage.encode_forward(x, _ctx())
    cb, codes = fields["codebook"].value, fields["codes"].value.long()
    assert cb.shape == (2, 4, 4) and bool((cb[1] > 50).all()) and bool((cb[0] < 50).all())
    z = stage.decode_forward({"codes": codes, "codebook": cb}, None, _ctx())
    torch.testing.assert_close(z.reshape(8, 8, 4)[:, 4:], cb[1][codes[:, 4:]])


def test_fedlite_rejects_codes_beyond_l() -> None:
    h = make("fedlite:l=5")  # 3-bit codes can hold 5..7, which are not codewords
    x, y = h.batch()
    msg = h.pipeline.unpack(h.client.forward(x, y, 0))
    msg.fields["0.codes"].value[0, 0] = 7
    with pytest.raises(WireFormatError, match="codes outside"):
        h.server.train_step(h.pipeline.pack(msg), 0)


def test_fedlite_gradient_correction_term() -> None:
    cut = Cut(tokens=4, dim=8, num_classes=10, batch_size=8)
    x = torch.randn(8, 4, 8)
    g = torch.randn(8, 4, 8)
    grads = {}
    for lam in (0.0, 0.5):
        stage = _pipe(f"fedlite:l=4,subdim=4,correction={lam}", cut).stages[0]
        fields, _ = stage.encode_forward(x, Context(True, cut, 0, torch.Generator().manual_seed(1)))
        z = stage.decode_forward({k: f.value for k, f in fields.items()}, None, Context(True, cut))
        back = stage.encode_backward(g, Context(True, cut))
        grads[lam] = stage.decode_backward({k: f.value for k, f in back.items()}, Context(True, cut))
    assert torch.equal(grads[0.0], g)  # off: straight through
    torch.testing.assert_close(grads[0.5], g + 2 * 0.5 * (x - z))  # lambda·d/dz ||z - z~||^2


def test_fedlite_eval_does_not_touch_the_training_generator() -> None:
    h = make("fedlite")
    state = h.client.generator.get_state()
    a, _ = h.eval_bytes(13)
    assert torch.equal(state, h.client.generator.get_state())
    b, _ = h.eval_bytes(13)
    assert a == b


def test_fedlite_shape_errors_are_param_errors() -> None:
    with pytest.raises(ParamError, match="subdim"):
        _pipe("fedlite:subdim=5")
    with pytest.raises(ParamError, match="groups"):
        _pipe("fedlite:subdim=64,groups=2")  # q = 591 is odd


def test_fedlite_wire_is_information_plus_framing() -> None:
    h = make("fedlite:l=16")
    fwd, _, _ = h.step()
    b = breakdown(fwd)
    assert set(Message.decode(fwd).fields) == {"0.codes", "0.codebook", "y"}
    assert b["framing"] < 0.005 * len(fwd) + 64


# --------------------------------------------------------------------------------------------
# tome
# --------------------------------------------------------------------------------------------
def _tome(spec: str, tokens: int = 17, dim: int = 8) -> Pipeline:
    return _pipe(spec, Cut(tokens=tokens, dim=dim, num_classes=10, batch_size=4))


def test_tome_conserves_mass_and_counts() -> None:
    p = _tome("tome:ratio=0.25")  # k = 4 of 17: three bipartite rounds (16 -> 8 -> 4 ... -> 3 patches)
    x = torch.randn(4, 17, 8, generator=torch.Generator().manual_seed(0))
    fields, rest = p.stages[0].encode_forward(x, _ctx())
    sizes = fields["sizes"].value.long() + 1
    assert rest.shape == (4, 4, 8) and sizes.shape == (4, 3) and fields["sizes"].bits == 4
    assert torch.equal(sizes.sum(1), torch.full((4,), 16))
    assert torch.equal(rest[:, 0], x[:, 0]), "CLS is never merged"
    # size-weighted averages: sum_j s_j x~_j equals the sum of the patch tokens
    torch.testing.assert_close((rest[:, 1:] * sizes[..., None]).sum(1), x[:, 1:].sum(1))


def test_tome_merges_identical_tokens_first() -> None:
    p = _tome("tome:ratio=0.56", tokens=9)  # k = 5: 8 patches -> 4 in one round, r = 4
    twins = torch.randn(4, 4, 8).repeat_interleave(2, dim=1)  # patches 2i and 2i+1 equal (A/B pairs)
    x = torch.cat([torch.randn(4, 1, 8), twins], dim=1)
    fields, rest = p.stages[0].encode_forward(x, _ctx())
    assert torch.equal(fields["sizes"].value.long() + 1, torch.full((4, 4), 2))
    torch.testing.assert_close(rest[:, 1:], twins[:, ::2])


def test_tome_repeat_is_proportional_attention() -> None:
    from timm.models.vision_transformer import Attention

    torch.manual_seed(0)
    attn = Attention(8, num_heads=2).eval()
    p = _tome("tome:ratio=0.3")
    x = torch.randn(4, 17, 8)
    fields, rest = p.stages[0].encode_forward(x, _ctx())
    repeated = p.stages[0].decode_forward({"sizes": fields["sizes"].value}, rest, _ctx())
    sizes = torch.cat([torch.ones(4, 1), fields["sizes"].value.float() + 1], dim=1)
    # ToMe's proportional attention on the k merged tokens: softmax(q k^T * scale + log s) v
    B, k, d = rest.shape
    qkv = attn.qkv(rest).reshape(B, k, 3, 2, d // 2).permute(2, 0, 3, 1, 4)
    q, kk, v = qkv.unbind(0)
    w = (q @ kk.transpose(-2, -1) * attn.scale + sizes.log()[:, None, None, :]).softmax(-1)
    prop = attn.proj((w @ v).transpose(1, 2).reshape(B, k, d))
    torch.testing.assert_close(attn(repeated)[:, 0], prop[:, 0], atol=1e-5, rtol=1e-5)


def test_tome_without_proportional_sends_only_tokens() -> None:
    h = make("tome:ratio=0.25,proportional=false")
    fwd, _, _ = h.step()
    assert set(Message.decode(fwd).fields) == {"1.x", "y"}
    h2 = make("tome:ratio=0.25")
    assert "0.sizes" in Message.decode(h2.step()[0]).fields


# --------------------------------------------------------------------------------------------
# lowrank
# --------------------------------------------------------------------------------------------
def _lowrank_error(spec: str, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    cut = Cut(tokens=x.shape[1], dim=x.shape[2], num_classes=10, batch_size=x.shape[0])
    stage = _pipe(spec, cut).stages[0]
    fields, p = stage.encode_forward(x, Context(True, cut, 0, torch.Generator().manual_seed(1)))
    xhat = stage.decode_forward({"q": fields["q"].value}, p, Context(True, cut))
    return float((xhat - x).pow(2).sum()), xhat


def test_lowrank_svd_is_the_truncated_svd() -> None:
    x = torch.randn(3, 12, 10, generator=torch.Generator().manual_seed(0))
    _, xhat = _lowrank_error("lowrank:rank=4,solver=svd", x)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    torch.testing.assert_close(xhat, u[..., :4] @ torch.diag_embed(s[:, :4]) @ vh[:, :4], atol=1e-5, rtol=1e-5)
    low = torch.randn(3, 12, 3) @ torch.randn(3, 3, 10)  # rank 3: reconstructed exactly
    assert _lowrank_error("lowrank:rank=3,solver=svd", low)[0] < 1e-8


def test_lowrank_power_iterations_approach_svd() -> None:
    x = torch.randn(3, 12, 10, generator=torch.Generator().manual_seed(0))
    exact = _lowrank_error("lowrank:rank=4,solver=svd", x)[0]
    rough = _lowrank_error("lowrank:rank=4,solver=power,iters=1", x)[0]
    close = _lowrank_error("lowrank:rank=4,solver=power,iters=30", x)[0]
    assert exact <= close < rough and close < exact * 1.01


def test_lowrank_backward_is_the_projected_gradient() -> None:
    cut = Cut(tokens=12, dim=10, num_classes=10, batch_size=3)
    stage = _pipe("lowrank:rank=4", cut).stages[0]
    x = torch.randn(3, 12, 10, requires_grad=True)
    g = torch.randn(3, 12, 10)
    fields, p = stage.encode_forward(x, _ctx())
    leaf = p.detach().requires_grad_()
    (stage.decode_forward({"q": fields["q"].value}, leaf, _ctx()) * g).sum().backward()
    q = fields["q"].value
    torch.testing.assert_close(leaf.grad, g @ q)  # the rank-r gradient message
    p.backward(leaf.grad)
    torch.testing.assert_close(x.grad, g @ q @ q.transpose(1, 2))


def test_lowrank_float16_factors_and_rank_limit() -> None:
    p = _pipe("lowrank:rank=8,factors=float16")
    assert p.stages[1].config["dtype"] == "float16"
    assert p.analytic_bytes(128)[1] == 2 * 128 * 197 * 8  # backward: dL/dP in float16
    assert p.analytic_bytes(128)[0] == 2 * 128 * 192 * 8 + 2 * 128 * 197 * 8 + 128 * 7 // 8  # 7-bit labels
    with pytest.raises(ParamError, match="rank"):
        _pipe("lowrank:rank=193")


# --------------------------------------------------------------------------------------------
# compositions: the new stages feed any terminal
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec", ["tome:ratio=0.5+quant:bits=4", "lowrank:rank=4+quant:bits=8", "tome:ratio=0.5+lowrank:rank=2"]
)
def test_compositions_round_trip_with_exact_analytic_size(spec: str) -> None:
    h = make(spec)
    fwd, bwd, loss = h.step()
    assert math.isfinite(loss)
    info = [sum(v for k, v in breakdown(m).items() if k != "framing") for m in (fwd, bwd)]
    assert tuple(info) == h.pipeline.analytic_bytes(16)
