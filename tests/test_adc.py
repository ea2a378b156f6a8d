import pytest
import torch
import torch.nn.functional as F

from adcbench.core.method import METHODS, Context, Cut
from adcbench.core.pipeline import Pipeline
from adcbench.wire import breakdown

# Reference §1.7: (T, k) at B = 128, n = 197 for each rule (golden values).
GOLDEN = {
    "A": {0.01: (50, 4), 0.05: (70, 17), 0.1: (80, 31), 0.2: (92, 54), 0.3: (100, 75), 0.4: (106, 94), 0.5: (111, 113)},
    "B": {0.01: (12, 19), 0.05: (28, 44), 0.1: (40, 62), 0.2: (57, 88), 0.3: (70, 107), 0.4: (80, 124), 0.5: (90, 139)},
    "C": {
        0.01: (12, 62),
        0.05: (28, 93),
        0.1: (40, 110),
        0.2: (57, 131),
        0.3: (70, 145),
        0.4: (80, 156),
        0.5: (90, 165),
    },
}
CUT = Cut(tokens=17, dim=8, num_classes=5, batch_size=16)


@pytest.mark.parametrize("rule", "ABC")
def test_rules_match_reference_table(rule):
    for xi, (T, k) in GOLDEN[rule].items():
        adc = METHODS.get("adc")(xi=xi, rule=rule)
        adc.setup(Cut(197, 192, 100, 128), (197, 192))
        assert (adc.clusters(128), adc.tokens(197)) == (T, k), (rule, xi)


def test_explicit_rates_override_rule():
    adc = METHODS.get("adc")(xi=0.1, batch_rate=1.0, token_rate=0.5)
    adc.setup(CUT, (17, 8))
    assert adc.clusters(16) == 16 and adc.tokens(17) == 8


def _encode(spec="adc:xi=0.25", seed=0, B=16, training=True, labels=None):
    g = torch.Generator().manual_seed(123)
    h = torch.randn(B, 17, 8, generator=g, requires_grad=True)
    att = torch.softmax(torch.randn(B, 17, generator=g) * 3, dim=1)
    y = labels if labels is not None else torch.randint(0, 5, (B,), generator=g)
    p = Pipeline.from_spec(spec)
    p.setup(CUT)
    ctx = Context(training, CUT, 0, torch.Generator().manual_seed(seed), labels=y if training else None, attention=att)
    msg, carrier = p.encode_forward(h, ctx)
    return p, h, att, y, ctx, msg, carrier


def test_shapes_T_k_d_and_soft_labels_sum_to_one():
    p, h, att, y, ctx, msg, z = _encode("adc:xi=0.25,labels=soft")
    adc = p.stages[0]
    T, k = adc.clusters(16), adc.tokens(17)
    assert (T, k) == (8, 8)
    assert z.shape == (T, k, 8)
    soft = msg["0.soft"]
    assert soft.shape == (T, 5) and torch.allclose(soft.sum(1), torch.ones(T))
    assert ctx.stats["adc.T"] == T and ctx.stats["adc.k"] == k


def test_merge_is_member_mean_on_shared_tokens_and_cls_always_kept():
    p, h, att, y, ctx, msg, z = _encode("adc:xi=0.25,labels=soft")
    T, k = z.shape[:2]
    # rebuild from the soft labels' structure is not possible; use the method's own K-means again
    from adcbench.methods.adc import kmeans

    assign, _ = kmeans(att, T, 50, 1e-4, torch.Generator().manual_seed(0))
    for j in range(T):
        members = (assign == j).nonzero().flatten()
        assert len(members) > 0
        centroid = att[members].mean(0)
        idx = torch.cat([torch.tensor([0]), centroid[1:].topk(k - 1).indices.add(1).sort().values])
        expected = h[members][:, idx].mean(0)
        assert torch.allclose(z[j], expected, atol=1e-6)
        onehot = F.one_hot(y[members], 5).float().mean(0)
        assert torch.allclose(msg["0.soft"][j], onehot)


def test_gradient_spread_is_g_over_cluster_size_on_selected_rows():
    p, h, att, y, ctx, msg, z = _encode()
    g = torch.randn_like(z)
    z.backward(g)
    from adcbench.methods.adc import kmeans

    T, k = z.shape[:2]
    assign, _ = kmeans(att, T, 50, 1e-4, torch.Generator().manual_seed(0))
    for i in range(16):
        j = int(assign[i])
        size = int((assign == j).sum())
        centroid = att[assign == j].mean(0)
        idx = torch.cat([torch.tensor([0]), centroid[1:].topk(k - 1).indices.add(1).sort().values])
        expected = torch.zeros(17, 8)
        expected[idx] = g[j] / size
        assert torch.allclose(h.grad[i], expected, atol=1e-6)


def test_hard_labels_rebuild_the_same_soft_targets_and_cost_less():
    p_soft, *_, msg_soft, _ = _encode("adc:xi=0.25,labels=soft")
    p_hard, *_, msg_hard, _ = _encode("adc:xi=0.25")  # hard is the default
    assert "0.y" in msg_hard and "0.soft" not in msg_hard
    t_soft = Context(True, CUT)
    p_soft.decode_forward(p_soft.unpack(p_soft.pack(msg_soft)), t_soft)
    t_hard = Context(True, CUT)
    p_hard.decode_forward(p_hard.unpack(p_hard.pack(msg_hard)), t_hard)
    assert torch.equal(t_soft.targets, t_hard.targets)  # bit-identical targets
    b_soft, b_hard = breakdown(p_soft.pack(msg_soft)), breakdown(p_hard.pack(msg_hard))
    assert b_hard["labels"] + b_hard["side"] < b_soft["labels"]
    assert b_hard["side"] == (16 * 3 + 7) // 8  # 16 cluster ids of ceil(log2 8) = 3 bits


def test_deterministic_under_seed_and_seed_matters():
    *_, m1, _ = _encode(seed=1)
    *_, m2, _ = _encode(seed=1)
    *_, m3, _ = _encode(seed=2)
    assert m1.encode() == m2.encode()
    assert any(m1.encode() != m.encode() for m in [m3])


def test_wire_matches_analytic_size_exactly_plus_framing():
    for spec in ("adc:xi=0.25", "adc:xi=0.1,labels=hard", "adc:xi=0.5,rule=A"):
        p, *_, msg, z = _encode(spec)
        data = p.pack(msg)
        b = breakdown(data)
        fwd, bwd = p.analytic_bytes(16)
        assert b["payload"] + b["side"] + b["labels"] == fwd
        assert b["framing"] < 64
        grad = p.pack(p.encode_backward(torch.zeros_like(z), Context(True, CUT)))
        assert breakdown(grad)["payload"] == bwd == z.numel() * 4


def test_eval_compressed_is_per_sample_token_selection():
    p, h, att, y, ctx, msg, z = _encode(training=False)
    k = p.stages[0].tokens(17)
    assert z.shape == (16, k, 8)
    for i in range(16):
        idx = torch.cat([torch.tensor([0]), att[i, 1:].topk(k - 1).indices.add(1).sort().values])
        assert torch.equal(z[i], h[i, idx])
    assert "0.soft" not in msg and "y" not in msg  # eval sends no labels


def test_kmeans_repairs_empty_clusters_deterministically():
    from adcbench.methods.adc import kmeans

    pts = torch.zeros(10, 4)
    pts[5:] = 1.0  # two distinct points only; 4 clusters requested
    for seed in range(5):
        assign, empty = kmeans(pts, 4, 50, 1e-4, torch.Generator().manual_seed(seed))
        assert torch.bincount(assign, minlength=4).min() >= 1
        again, _ = kmeans(pts, 4, 50, 1e-4, torch.Generator().manual_seed(seed))
        assert torch.equal(assign, again)


def test_batch_rate_one_skips_clustering():
    p, h, att, y, ctx, msg, z = _encode("adc:xi=0.25,batch_rate=1,labels=soft")
    assert z.shape[0] == 16
    soft = msg["0.soft"]
    assert torch.equal(soft, F.one_hot(y, 5).float())


def test_hard_labels_without_merging_send_no_cluster_ids():
    """T = B: sample i is cluster i, so only the packed labels travel (3 bits for 5 classes)."""
    p, h, att, y, ctx, msg, z = _encode("adc:xi=0.25,batch_rate=1")
    assert set(msg) == {"0.y", "1.x"} and msg.fields["0.y"].bits == 3
    t = Context(True, CUT)
    p.decode_forward(p.unpack(p.pack(msg)), t)
    assert torch.equal(t.targets, F.one_hot(y, 5).float())
