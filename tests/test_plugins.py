"""A method added by a third-party entry point is discovered and runs like a built-in one."""

from __future__ import annotations

import textwrap

import pytest
import torch
from _harness import one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import METHODS
from adcbench.wire import breakdown

PLUGIN = """
from adcbench.core.method import Method


class Halve(Method):
    description = "test plugin: sends x/2, server doubles it"
    eval_compressed = "same as training"

    def encode_forward(self, x, ctx):
        return {}, x / 2

    def decode_forward(self, fields, rest, ctx):
        return rest * 2

    def analytic_forward(self, batch, in_shape, training):
        return 0, batch
"""


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    (tmp_path / "adcbench_halve_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "adcbench_halve_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: adcbench-halve-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[adcbench.methods]\nhalve = adcbench_halve_plugin:Halve\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    METHODS.names()  # discover the built-ins first: restoring an undiscovered (empty) registry breaks later tests
    saved = dict(METHODS._entries)
    METHODS._discovered = False
    yield
    METHODS._entries.clear()
    METHODS._entries.update(saved)
    METHODS._discovered = True


def test_entry_point_method_is_listed_and_runs(plugin_dist) -> None:
    from _harness import make, sent_and_decoded

    assert "halve" in METHODS.names()
    assert "topk" in METHODS.names()  # built-ins are still there
    sent, decoded = sent_and_decoded(make("halve"))  # x/2 then *2 is exact in float32
    assert torch.equal(decoded, sent), "the server computes on what the plugin decoded"
    h = make("halve+quant:bits=8")
    fwd, bwd, _ = h.step()
    assert len(fwd) - breakdown(fwd)["framing"] == h.pipeline.analytic_bytes(16)[0]


def test_entry_point_method_shows_in_cli_listing(plugin_dist) -> None:
    cli = pytest.importorskip("adcbench.cli", reason="the CLI lands from the main branch")
    from click.testing import CliRunner

    result = CliRunner().invoke(cli.main, ["methods"])
    assert result.exit_code == 0, result.output
    assert "halve" in result.output


def test_cli_lists_the_zoo_with_presets_and_eval_behaviour() -> None:
    cli = pytest.importorskip("adcbench.cli", reason="the CLI lands from the main branch")
    from click.testing import CliRunner

    listing = CliRunner().invoke(cli.main, ["methods", "adc*"])
    assert listing.exit_code == 0, listing.output
    for name in ("adc ", "adc-batch", "adc-token"):
        assert name in listing.output
    one = CliRunner().invoke(cli.main, ["methods", "quant"])
    assert "grad_bits" in one.output and "eval (compressed policy)" in one.output
