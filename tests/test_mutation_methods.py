"""Method-plugin behaviour the contract tests do not pin (found by mutation testing,
docs/benchmarks/mutation.md): the documented operating points and lossless levels, FedLite's
K-means init and subdim check, randtopk's sampling mass, tokenprune with two prefix tokens, ADC's
K-means stopping rule and the smallest bottleneck code."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import pytest
import torch
import zstandard
from _harness import make, one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import METHODS, Context, Cut
from adcbench.core.pipeline import Pipeline
from adcbench.errors import ParamError
from adcbench.methods.adc import kmeans
from adcbench.methods.fedlite import batched_kmeans
from adcbench.wire import CONTAINER_HEADER

DOCS = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text()


def _documented_ladders() -> dict[str, tuple[str, tuple[str, ...]]]:
    """docs/methods.md "Operating points": `name` knob = v1, v2, ...; one entry per method."""
    section = " ".join(DOCS.split("Operating points", 1)[1].split("\n\n", 1)[0].split())
    found = re.findall(r"`([\w-]+)` (\w+) = ([^;`]+)", section)
    return {name: (knob, tuple(values.rstrip(". ").split(", "))) for name, knob, values in found}


def test_rate_ladders_are_the_documented_operating_points() -> None:
    docs = _documented_ladders()
    declared = {n: METHODS.get(n).rate_param for n in METHODS.names() if METHODS.get(n).rate_param}
    assert set(docs) == set(declared), "every rate knob's operating points are listed in docs/methods.md"
    for name, (knob, values) in declared.items():
        assert docs[name] == (knob, tuple(str(v) for v in values)), name


@pytest.mark.parametrize("name,library", [("zstd", "zstandard"), ("zlib", "zlib")])
def test_lossless_default_level_is_the_documented_one(name: str, library: str) -> None:
    level = int(re.search(rf"{library} \(`level`, default (\d+)\)", DOCS).group(1))  # type: ignore[union-attr]
    assert METHODS.get(name)().config["level"] == level
    h = make(f"quant:bits=4+{name}")
    inner = make("quant:bits=4").step()[0]
    fwd = h.step()[0]
    if library == "zlib":
        body = zlib.compress(inner, level)
    else:
        body = zstandard.ZstdCompressor(level=level, write_content_size=False).compress(inner)
    assert fwd[CONTAINER_HEADER:] == body, f"{name}'s default bytes are the library's at level {level}"


@pytest.mark.parametrize("spec,low,top", [("zstd:level", 1, 22), ("zlib:level", 0, 9)])
def test_lossless_levels_span_the_librarys_range(spec: str, low: int, top: int) -> None:
    # zstd's positive levels 1-22, zlib's 0 (stored) to 9
    assert top == (zstandard.MAX_COMPRESSION_LEVEL if spec.startswith("zstd") else zlib.Z_BEST_COMPRESSION)
    for ok in (low, top):
        Pipeline.from_spec(f"quant+{spec}={ok}")
    for bad in (low - 1, top + 1):
        with pytest.raises(ParamError):
            Pipeline.from_spec(f"quant+{spec}={bad}")


def test_bottleneck_code_is_at_least_one_value_wide() -> None:
    for ratio, width in ((0.001, 1), (0.04, 1), (0.05, 2), (0.5, 16)):  # d' = max(1, round(ratio * 32))
        assert Pipeline.from_spec(f"bottleneck:ratio={ratio}").stages[0].code_dim(32) == width, ratio


def _lloyd_step(points: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The init (same draw as adc.kmeans) and one Lloyd update of it."""
    c0 = points[torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(seed))[:k]]
    assign = torch.cdist(points, c0).argmin(1)
    new = torch.stack([points[assign == j].mean(0) if (assign == j).any() else c0[j] for j in range(k)])
    return c0, new


def test_adc_kmeans_stops_on_the_sum_of_centroid_shift_norms() -> None:
    """kmeans_pytorch's rule (the paper's library): stop once (sum_j ||c_j' - c_j||)^2 < tol."""
    checked = 0
    for seed in range(40):
        points = torch.randn(12, 3, generator=torch.Generator().manual_seed(seed))
        one = kmeans(points, 3, 1, 0.0, torch.Generator().manual_seed(seed))[0]
        two = kmeans(points, 3, 2, 0.0, torch.Generator().manual_seed(seed))[0]
        c0, new = _lloyd_step(points, 3, seed)
        rule, other = (new - c0).norm(dim=1).sum() ** 2, (new - c0).norm(dim=0).sum() ** 2
        if torch.equal(one, two) or abs(float(rule - other)) < 1e-3:
            continue  # the second iteration changes nothing, or the two sums cannot be told apart
        tol = float(rule + other) / 2  # the rule stops after one iteration iff rule < tol
        got = kmeans(points, 3, 2, tol, torch.Generator().manual_seed(seed))[0]
        assert torch.equal(got, one if rule < tol else two), seed
        checked += 1
    assert checked >= 3


def test_fedlite_kmeans_init_is_k_distinct_points_of_each_set() -> None:
    g = torch.Generator().manual_seed(0)
    points = torch.randn(3, 10, 4, generator=g)
    init = batched_kmeans(points, 5, 0, torch.Generator().manual_seed(1))  # 0 iterations: the init
    assert init.shape == (3, 5, 4)
    for s in range(3):
        rows = [int((points[s] == c).all(1).nonzero()) for c in init[s]]  # each centroid is a point
        assert len(set(rows)) == 5
    # as many clusters as points: Lloyd keeps every point as its own centroid
    full = batched_kmeans(points, 10, 3, torch.Generator().manual_seed(1))
    for s in range(3):
        assert torch.equal(full[s][full[s][:, 0].argsort()], points[s][points[s][:, 0].argsort()])


def test_fedlite_subdim_must_divide_the_token_width_not_the_token_count() -> None:
    cut = Cut(17, 32, 10, 16)
    Pipeline.from_spec("fedlite:subdim=8").setup(cut)  # 8 divides d = 32 (not n = 17)
    with pytest.raises(ParamError, match="subdim=17"):
        Pipeline.from_spec("fedlite:subdim=17").setup(cut)


def test_randtopk_puts_alpha_of_the_mass_outside_the_top_k() -> None:
    # k = 1: the one kept value lies outside the top-1 with probability alpha exactly
    stage = Pipeline.from_spec("randtopk:alpha=0.5").stages[0]
    N, D = 4000, 4
    flat = torch.arange(D, dtype=torch.float32).expand(N, D)  # the top-1 is the last column
    ctx = Context(True, Cut(2, 2, 10, N), 0, torch.Generator().manual_seed(0))
    outside = (stage.select(flat, 1, ctx)[:, 0] != D - 1).float().mean().item()
    assert abs(outside - 0.5) < 0.04, outside  # 5 standard errors
    ctx.training = False
    assert bool((stage.select(flat, 1, ctx)[:, 0] == D - 1).all()), "eval: plain top-k"


def test_tokenprune_keeps_every_prefix_token() -> None:
    pipe = Pipeline.from_spec("tokenprune:ratio=0.5")
    pipe.setup(Cut(8, 4, 10, 3, prefix_tokens=2))  # e.g. CLS + a distillation token
    stage = pipe.stages[0]
    ctx = Context(True, pipe.cut, 0)  # type: ignore[arg-type]
    ctx.attention = torch.tensor([[9.0, 0.0, 1, 2, 3, 4, 5, 6]]).expand(3, 8)  # prefix 1 scores lowest
    kept = stage.select_rows(ctx)
    assert kept.tolist() == [[0, 1, 6, 7]] * 3  # both prefix tokens, then the top-2 patch tokens
