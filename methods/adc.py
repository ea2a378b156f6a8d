"""`adc`: Attention-based Double Compression (Alvetreti et al., EUSIPCO 2026; arXiv 2509.15058).

Training step (docs/adc.md has the full account and every deviation from the paper's code):
1. s_i: CLS-query attention row of the last client block, averaged over heads (n values).
2. Batch compression: K-means (Euclidean, <= `kmeans_iters` iterations, tol `kmeans_tol`, seeded
   random init from T distinct samples) clusters the B attention vectors into
   T = max(2, floor(r_b * B)) groups; each group's activations are averaged (unweighted mean of
   the full n×d activations of its members).
3. Token compression: k = max(1, floor(r_t * n)) tokens per merged sample, CLS always kept plus
   the top-(k-1) patch tokens of the cluster's mean attention profile; all members of a cluster
   share one token set. z is T×k×d.
4. Labels: by default (`labels=hard`) the B class indices at ceil(log2 C) bits + B cluster ids
   at ceil(log2 T) bits (no ids when T = B: sample i is cluster i); the server rebuilds from them
   exactly the soft targets the paper sends (mean of the members' one-hot rows). `labels=soft`
   sends those T×C float32 rows themselves, the paper's bytes (up to 77x the label information).
   Unlike the paper, labels are counted.
5. Backward: the server returns dL/dz (T×k×d); autograd through gather+mean hands each member
   g_j/|c_j| on its cluster's token rows and 0 elsewhere (exact gradient of the compressed graph).

Rates: `xi` splits into r_b = T/B and r_t = k/n by `rule` B (sqrt(xi) each; the paper's text, the
default), A (xi^(1/5), xi^(4/5); the arXiv-era code) or C (sqrt(xi), xi^(1/4); the released code,
which sends xi^(3/4) while charging xi). `batch_rate`/`token_rate` override either factor.
Evaluation with policy `compressed`: no merging (undefined per sample); each sample keeps CLS +
its own top-(k-1) tokens.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from adcbench.core.method import (
    Context,
    Decoded,
    Fields,
    Method,
    cpu_array,
    expect_tensor,
    label_field,
    label_nbytes,
    read_labels,
    register_method,
)
from adcbench.core.params import Param
from adcbench.errors import WireFormatError
from adcbench.wire import Category, Field, bits_for, packed_nbytes

RULES = {
    "A": (1 / 5, 4 / 5),  # C1 commits Jun-Sep 2025: "token = batch^4"
    "B": (1 / 2, 1 / 2),  # paper text: T/B = k/n = sqrt(xi)
    "C": (1 / 2, 1 / 4),  # C2 release: product xi^(3/4) (a bug; kept selectable for fidelity)
}
_EPS = 1e-9  # floor(0.1 * 130) must be 13, not 12.999...


@register_method("adc")
class ADC(Method):
    description = "attention-based double compression: K-means batch merging + attention top-k tokens"
    params = (
        Param("xi", float, 0.1, "target compression ratio T*k/(B*n)", low=0.0, high=1.0, low_open=True),
        Param("rule", str, "B", "how xi splits into T/B and k/n", choices=tuple(RULES)),
        Param("batch_rate", float, None, "override T/B", low=0.0, high=1.0, low_open=True, optional=True),
        Param("token_rate", float, None, "override k/n", low=0.0, high=1.0, low_open=True, optional=True),
        Param(
            "labels",
            str,
            "hard",
            "label encoding: hard (packed labels + cluster ids; the server rebuilds the paper's soft "
            "targets exactly) or soft (T×C float32 rows, the paper's bytes)",
            choices=("soft", "hard"),
        ),
        Param("kmeans_iters", int, 50, "maximum K-means iterations (paper 50)", low=1, high=10000),
        Param("kmeans_tol", float, 1e-4, "K-means stop: squared total centroid shift below this", low=0.0),
    )
    needs_attention = True
    eval_compressed = "per-sample token selection (CLS + own top-(k-1) tokens), no merging"
    deployment_policy = "raw"  # the paper: no merging or pruning at test time
    rate_param = ("xi", (0.5, 0.2, 0.05))
    field_categories = {"soft": Category.LABELS, "y": Category.LABELS, "cid": Category.SIDE}

    # -- rates ----------------------------------------------------------------------------------
    def rates(self) -> tuple[float, float]:
        eb, et = RULES[self.config["rule"]]
        xi = self.config["xi"]
        rb = self.config["batch_rate"] if self.config["batch_rate"] is not None else xi**eb
        rt = self.config["token_rate"] if self.config["token_rate"] is not None else xi**et
        return rb, rt

    def clusters(self, batch: int) -> int:
        rb, _ = self.rates()
        return min(batch, max(2, math.floor(rb * batch + _EPS)))

    def tokens(self, n: int) -> int:
        _, rt = self.rates()
        p = self.cut.prefix_tokens if self.cut else 1
        return min(n, max(p, math.floor(rt * n + _EPS)))

    def rest_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        n, d = in_shape
        return (self.tokens(n), d)

    def output_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        return self.rest_shape(in_shape, training)  # the server works on the kept tokens

    def sends_labels(self, training: bool) -> bool:
        return training

    def nominal_ratio(self) -> float:
        # What the authors' code charges: the nominal xi, whatever T*k/(B*n) really is (and
        # with rule C it really is xi^(3/4)); labels are not charged there.
        return self.config["xi"]

    # -- client ---------------------------------------------------------------------------------
    def select_rows(self, ctx: Context) -> torch.Tensor:
        """Each sample's rows: its cluster's token set (training) or its own top tokens (eval)."""
        ctx.plan = self._plan(ctx)
        return ctx.plan[-1]

    def _plan(self, ctx: Context) -> tuple:
        """(T, assign, #empty, weights, idx, rows) in training, (idx, rows) at eval: every decision
        of the step, from the attention alone."""
        if ctx.attention is None:
            raise RuntimeError("adc needs the client's attention scores (ctx.attention)")
        s = ctx.attention.detach().float()
        B, n = s.shape
        k = self.tokens(n)
        if not ctx.training:
            idx = self._top_tokens(s, k)  # per sample
            return idx, idx
        T = self.clusters(B)
        if T == B:  # every sample its own cluster: no clustering needed
            assign, empty = torch.arange(B, device=s.device), 0
        else:
            assign, empty = kmeans(s, T, self.config["kmeans_iters"], self.config["kmeans_tol"], ctx.generator)
        member = F.one_hot(assign, T).to(s.dtype)  # B×T
        weights = (member / member.sum(0, keepdim=True)).T  # T×B, rows: unweighted member mean
        idx = self._top_tokens(weights @ s, k)  # T×k, from each cluster's mean attention profile
        return T, assign, empty, weights, idx, idx[assign]

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor]:
        B, n, d = x.shape
        plan = ctx.plan if ctx.plan is not None else self._plan(ctx)
        if not ctx.training:
            return {}, x.gather(1, plan[-1].unsqueeze(-1).expand(-1, -1, d))
        T, assign, empty, weights, idx, rows = plan
        k = idx.shape[1]
        weights = weights.to(x.dtype)
        gathered = x.gather(1, rows.unsqueeze(-1).expand(-1, -1, d))  # B×k×d
        z = (weights @ gathered.reshape(B, k * d)).reshape(T, k, d)
        ctx.labels_sent = True
        ctx.stats.update(
            {
                "adc.T": T,
                "adc.k": k,
                "adc.empty_clusters": empty,
                "adc.max_cluster": int(weights.count_nonzero(1).max()),
            }
        )
        return self._label_fields(ctx, assign, weights, T), z

    def _top_tokens(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        """Prefix tokens (CLS) always, then the top-(k-p) patch positions; sorted, so the bytes
        do not depend on topk's tie order."""
        p = self.cut.prefix_tokens if self.cut else 1
        rows = scores.shape[0]
        prefix = torch.arange(p, device=scores.device).expand(rows, p)
        if k == p:
            return prefix.contiguous()
        top = scores[:, p:].topk(k - p, dim=1).indices + p
        return torch.cat([prefix, top.sort(dim=1).values], dim=1)

    def _label_fields(self, ctx: Context, assign: torch.Tensor, weights: torch.Tensor, T: int) -> Fields:
        assert ctx.labels is not None
        C = ctx.cut.num_classes
        if self.config["labels"] == "soft":
            soft = weights @ F.one_hot(ctx.labels, C).float()  # T×C, rows sum to 1
            return {"soft": Field.tensor(soft.float(), Category.LABELS)}
        fields = {"y": label_field(ctx.labels, C)}
        if T < assign.shape[0]:  # T = B: the ids are 0..B-1 (no K-means ran), nothing to send
            fields["cid"] = Field.packed(assign, bits_for(T), Category.SIDE)
        return fields

    # -- server ---------------------------------------------------------------------------------
    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None
        if not ctx.training:
            return rest
        ctx.targets = self._targets(fields, rest.shape[0], ctx.cut.num_classes)
        return rest

    def _targets(self, fields: Decoded, T: int, C: int) -> torch.Tensor:
        """The T×C soft targets, checked: every field as this configuration sends it."""
        if self.config["labels"] == "soft":
            if set(fields) != {"soft"}:
                raise WireFormatError(f"adc (labels=soft): expected the field 'soft', got {sorted(fields)}")
            soft = expect_tensor(fields, "soft", "adc", shape=(T, C), dtype=torch.float32)
            if bool((soft < 0).any()) or bool(((soft.sum(1) - 1).abs() > 1e-4).any()):
                raise WireFormatError("adc: soft labels must be probability rows (non-negative, summing to 1)")
            return soft
        y = read_labels(fields, "y", "adc", None, C)
        B = y.shape[0]
        if B == 0 or self.clusters(B) != T or set(fields) != ({"y", "cid"} if T < B else {"y"}):
            raise WireFormatError(f"adc: {B} labels do not fit {T} merged samples, or unexpected fields")
        if T < B:
            cid = expect_tensor(fields, "cid", "adc", shape=(B,), high=T - 1).long()
            size = torch.bincount(cid, minlength=T)
            if not bool(size.all()):
                raise WireFormatError("adc: every cluster needs at least one member")
        else:
            cid, size = torch.arange(B, device=y.device), torch.ones(B, dtype=torch.long, device=y.device)
        return _member_mean(cid, size, y, T, C)

    # -- analytic size --------------------------------------------------------------------------
    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        if not training:
            return 0, batch
        T = self.clusters(batch)
        C = self.cut.num_classes if self.cut else 0
        if self.config["labels"] == "soft":
            return 4 * T * C, T
        return label_nbytes(batch, C) + (packed_nbytes(batch, bits_for(T)) if T < batch else 0), T


def _member_mean(cid: torch.Tensor, size: torch.Tensor, y: torch.Tensor, T: int, C: int) -> torch.Tensor:
    """Bit for bit the client's member mean of one-hot labels, (one_hot(cid) / sizes).T @
    one_hot(y) (values already checked; sizes are the validation's counts): the same float32
    operands in the same layouts reach the same matmul. Built in numpy where the fields are
    plain CPU tensors (`cpu_array`), in torch where they were moved to a device."""
    B = y.shape[0]
    yn, c = cpu_array(y), cpu_array(cid)
    if yn is not None and c is not None:
        weights = np.zeros((B, T), dtype=np.float32)
        weights[np.arange(B), c] = (np.float32(1) / size.numpy().astype(np.float32))[c]
        onehot = np.zeros((B, C), dtype=np.float32)
        onehot[np.arange(B), yn] = 1
        return torch.from_numpy(weights).T @ torch.from_numpy(onehot)
    member = torch.zeros(B, T, device=y.device).scatter_(1, cid[:, None], 1.0)
    onehot = torch.zeros(B, C, device=y.device).scatter_(1, y[:, None], 1.0)
    return (member / size.float()).T @ onehot


def kmeans(
    points: torch.Tensor, k: int, iters: int, tol: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, int]:
    """Lloyd's K-means on the rows of `points`, vectorized over points and clusters.

    Init: k distinct rows drawn with `generator`. Stops after `iters` iterations or when the
    squared sum of centroid shifts falls below `tol` (the criterion of the library the paper
    used). Empty clusters keep their centroid during the iterations; at the end each empty
    cluster deterministically takes the point farthest from its centroid among clusters with
    >= 2 members, so exactly k non-empty clusters come back. Returns (assignment, #empty repaired).
    """
    n = points.shape[0]
    # Drawn on the CPU generator, so the init (and the bytes) do not depend on the device.
    centroids = points[torch.randperm(n, generator=generator)[:k].to(points.device)].clone()
    for _ in range(iters):
        assign = torch.cdist(points, centroids).argmin(1)
        member = F.one_hot(assign, k).to(points.dtype)
        counts = member.sum(0)
        sums = member.T @ points
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centroids)
        shift = (new - centroids).norm(dim=1).sum()
        centroids = new
        if float(shift) ** 2 < tol:
            break
    dist = torch.cdist(points, centroids)
    assign = dist.argmin(1)
    counts = torch.bincount(assign, minlength=k)
    empty = (counts == 0).nonzero().flatten().tolist()
    for c in empty:
        own = dist.gather(1, assign[:, None]).squeeze(1)
        movable = counts[assign] >= 2
        i = int(torch.where(movable, own, torch.full_like(own, -1.0)).argmax())
        counts[assign[i]] -= 1
        assign[i] = c
        counts[c] = 1
    return assign, len(empty)
