"""entropy-code / entropy-bottleneck: the counted bytes are the range coder's strings, close to the
model's code length; the rate term reaches the client; the decoder rejects tampered tables and
strings; without compressai the methods are refused with the install command."""

from __future__ import annotations

import pytest
import torch
from _harness import make, one_thread  # noqa: F401 (module-wide fixture)

import adcbench.core.method as method_mod
from adcbench.cli import catalog
from adcbench.core.method import METHODS, Context
from adcbench.errors import ParamError, WireFormatError
from adcbench.methods.entropy_bottleneck import INSTALL
from adcbench.wire import Field

have_compressai = not METHODS.get("entropy-code").missing()
needs = pytest.mark.skipif(not have_compressai, reason=f"needs compressai: {INSTALL}")


def _code_length_bits(fields: dict[str, Field], C: int) -> float:
    """-log2 of each sent symbol's probability under the sent (quantized) tables."""
    stage = METHODS.get("entropy-code")()
    stage.in_shape = (17, C)
    decoded = {k: f.value for k, f in fields.items()}
    tables, _ = stage._read_tables(decoded, C)
    y = stage.decode_forward(decoded, None, Context(False, None))  # type: ignore[arg-type]
    sym = (y.reshape(-1, C).t() - decoded["median"][:, None]).round().long()
    bits = 0.0
    for c in range(C):
        cdf = torch.tensor(tables.cdf[c], dtype=torch.float64)
        v = sym[c] - tables.offsets[c]
        bits += float(-torch.log2((cdf[v + 1] - cdf[v]) / 65536).sum())
    return bits


@needs
def test_counted_bytes_are_the_strings_and_near_the_code_length() -> None:
    h = make("entropy-code")
    h.step()
    x, y = h.batch()
    fwd = h.client.forward(x, y, 0)
    fields = {k.partition(".")[2]: f for k, f in h.pipeline.unpack(fwd).fields.items() if k != "y"}
    strings = fields["strings"].value
    assert isinstance(strings, bytes)
    assert h.client.stats["entropy.coded_bytes"] == len(strings)
    ideal = _code_length_bits(fields, h.cut.dim) / 8
    assert ideal <= len(strings) <= 1.005 * ideal + 16, (len(strings), ideal)
    assert h.client.stats["entropy.estimate_bytes"] > 0


@needs
def test_the_rate_term_reaches_the_client() -> None:
    grads = []
    for lam in (0.0, 10.0):
        h = make(f"entropy-code:lambda={lam}")
        h.step()
        grads.append(h.client.net.vit.patch_embed.proj.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1]), "lambda changes the client's gradient"


@needs
def test_training_lowers_the_coded_bytes() -> None:
    """A tight lambda shrinks the code faster than none (the density and the latents adapt)."""
    final = []
    for lam in (0.0, 50.0):
        h = make(f"entropy-bottleneck:ratio=0.25,lambda={lam}")
        for s in range(6):
            h.step(seed=s)
        final.append(h.client.stats["entropy.coded_bytes"])
    assert final[1] < final[0], final


@needs
def test_tampered_tables_and_strings_are_rejected() -> None:
    h = make("entropy-code")
    x, y = h.batch()
    msg = h.pipeline.unpack(h.client.forward(x, y, 0))
    stage = h.pipeline.stages[0]
    base = {k.partition(".")[2]: msg[k] for k in msg if k != "y"}
    ctx = Context(True, h.cut, 0, torch.Generator().manual_seed(0))
    cdf = base["cdf"].clone()
    cdf[1] = cdf[2]  # a zero-probability symbol
    s = base["strings"]
    for bad in (
        {"cdf": cdf},
        {"strings": s[:-3]},
        {"strings": s + b"\0"},
        {"strings": bytes(b ^ 0x5A for b in s)},
        {"strings": b"\xff" * (2 * 16 * 17 * 32 + 17)},
    ):
        with pytest.raises(WireFormatError):
            stage.decode_forward({**base, **bad}, None, ctx)


@needs
def test_a_table_longer_than_the_formats_256_entries_is_rejected() -> None:
    """docs/methods.md: a channel's CDF table has at most 256 entries; a well-formed table of
    256 (0 first, 2^16 last, strictly increasing) is read, one of 257 is refused."""
    h = make("entropy-code")
    x, y = h.batch()
    msg = h.pipeline.unpack(h.client.forward(x, y, 0))
    stage = h.pipeline.stages[0]
    base = {k.partition(".")[2]: msg[k] for k in msg if k != "y"}
    C = h.cut.dim
    stage._read_tables(base, C)  # the sent tables are fine

    def with_first_table(entries: int) -> dict:
        lengths = base["cdf_length"].long().clone()
        rows = list(torch.split(base["cdf"].long(), lengths.tolist()))
        rows[0] = torch.arange(entries) * 65536 // (entries - 1)  # 0, ..., 65536: strictly increasing
        lengths[0] = entries
        cdf, cdf_length = torch.cat(rows).to(base["cdf"].dtype), lengths.to(base["cdf_length"].dtype)
        return {**base, "cdf": cdf, "cdf_length": cdf_length}

    stage._read_tables(with_first_table(256), C)  # the cap itself is allowed
    with pytest.raises(WireFormatError, match="cdf_length"):
        stage._read_tables(with_first_table(257), C)


@needs
def test_drifted_quantiles_are_pulled_back_within_the_table_cap() -> None:
    """However far the learned quantiles drift from the median, the tables sent stay within the
    256 entries the decoder accepts (the quantiles are clamped to 126 either side first)."""
    h = make("entropy-code")
    stage = h.pipeline.stages[0]
    with torch.no_grad():
        q = stage.eb.quantiles.data
        q[:, 0, 0] = q[:, 0, 1] - 1000.0
        q[:, 0, 2] = q[:, 0, 1] + 1000.0
    x, y = h.batch()
    msg = h.pipeline.unpack(h.client.forward(x, y, 0))
    lengths = msg["0.cdf_length"].long()
    assert int(lengths.max()) <= 256 and int(lengths.min()) >= 200, lengths  # clamped, not collapsed
    fields = {k.partition(".")[2]: msg[k] for k in msg if k != "y"}
    stage.decode_forward(fields, None, Context(True, h.cut, 0, torch.Generator().manual_seed(0)))


def test_unavailable_without_compressai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(method_mod, "missing_modules", lambda names: list(names))
    monkeypatch.setattr(catalog, "missing_modules", lambda names: list(names))
    for spec in ("entropy-code", "entropy-bottleneck:ratio=0.1"):
        with pytest.raises(ParamError, match=r"unavailable.*compressai.*\.\[codecs\]"):
            METHODS.get(spec.partition(":")[0])()
        with pytest.raises(ParamError, match=r"pip install -e"):
            catalog.check("method", spec)
