"""The layout's promises: the plugin API is importable from `adcbench` alone, 0.1's module paths
still import (as the very same modules), and no module in adcbench/ outgrows ~400 lines."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
import torch
from _harness import one_thread  # noqa: F401 (module-wide fixture)

import adcbench

ROOT = Path(adcbench.__file__).resolve().parent
MAX_MODULE_LINES = 400

# A plugin written only against the documented public API (docs/methods.md, docs/tasks.md).
PLUGIN = '''
import torch
import adcbench
from adcbench import Category, Field, Method, Param, Task, WireFormatError, register_method, register_task  # noqa: F401


@register_method("api-unit")
class UnitScale(Method):
    """Sends x / max|x| (the float stage after it carries that) plus max|x| as a float32 side field."""

    description = "test plugin: unit-scaled activations with one float32 scale"
    params = (Param("eps", float, 1e-6, low=0.0, high=1.0),)

    def encode_forward(self, x, ctx):
        scale = x.detach().abs().max().clamp_min(self.config["eps"]).reshape(1)
        return {"scale": Field.tensor(scale, Category.SIDE)}, x / scale

    def decode_forward(self, fields, rest, ctx):
        scale = fields["scale"]
        if scale.shape != (1,) or not bool(torch.isfinite(scale).all()):
            raise WireFormatError("api-unit: the scale must be one finite float")
        return rest * scale

    def analytic_forward(self, batch, in_shape, training):
        return 4, batch


@register_task("api-blobs")
class Blobs(Task):
    description = "test plugin task: two gaussian blobs as 8x8 images"
    num_classes = 2
    image_size = 8
    in_chans = 1
    arch_kwargs = dict(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=2, num_heads=2)
    split_index = 1
    batch_size = 16
    lr = 1e-3
    epochs = 1

    def load_split(self, split):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        y = torch.arange(64) % 2
        x = torch.randn(64, 1, 8, 8, generator=g) + (y.float() * 2 - 1).view(-1, 1, 1, 1)
        return torch.utils.data.TensorDataset(x, y)
'''


@pytest.fixture
def public_api_plugin(tmp_path, monkeypatch):
    from adcbench.core.method import METHODS
    from adcbench.data.task import TASKS

    (tmp_path / "adcbench_api_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    saved_m, saved_t = dict(METHODS._entries), dict(TASKS._entries)
    importlib.import_module("adcbench_api_plugin")
    yield
    METHODS._entries.clear(), METHODS._entries.update(saved_m)
    TASKS._entries.clear(), TASKS._entries.update(saved_t)


def test_public_api_names_resolve() -> None:
    for name in adcbench.__all__:
        assert getattr(adcbench, name) is not None, name
    with pytest.raises(AttributeError):
        adcbench.no_such_name  # noqa: B018


def test_plugin_on_the_public_api_trains_through_the_loop(public_api_plugin) -> None:
    from adcbench.train import RunConfig, run

    rec = run(
        RunConfig(method="api-unit", task="api-blobs", max_steps=3, out=None, progress=False, eval_policy="compressed")
    )
    assert rec["status"] == "completed" and rec["steps"] == 3
    b, n, d = 16, rec["cut"]["tokens"], rec["cut"]["dim"]
    # The plugin's side field and the float32 rest crossed the wire, and nothing else.
    assert rec["bytes"]["breakdown_fwd"]["side"] == 3 * 4
    assert rec["bytes"]["breakdown_fwd"]["payload"] == 3 * 4 * b * n * d
    assert rec["final"]["acc_compressed"] is not None


OLD_PATHS = {
    "adcbench.method": "adcbench.core.method",
    "adcbench.params": "adcbench.core.params",
    "adcbench.pipeline": "adcbench.core.pipeline",
    "adcbench.results": "adcbench.core.records",
    "adcbench.task": "adcbench.data.task",
    "adcbench.imagetask": "adcbench.data.imagetask",
    "adcbench.sources": "adcbench.data.sources",
    "adcbench.split": "adcbench.model.split",
    "adcbench.backbones": "adcbench.model.backbones",
    "adcbench.pretrain": "adcbench.train.pretrain",
    "adcbench.roles": "adcbench.train.roles",
    "adcbench.leaderboard": "adcbench.report.leaderboard",
}


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_module_paths_are_the_new_modules(old: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(OLD_PATHS[old])


def test_old_from_imports_keep_working() -> None:
    from adcbench.method import METHODS, register_method  # noqa: F401
    from adcbench.pretrain import find_warmstart, pretrain  # noqa: F401
    from adcbench.train import RunConfig, run  # noqa: F401
    from adcbench.transport import Loopback, Meter  # noqa: F401
    from adcbench.wire import Field, Message, compress_container, pack_bits  # noqa: F401

    assert torch.equal(Message.decode(Message({"x": Field.tensor(torch.ones(2))}).encode())["x"], torch.ones(2))


def test_no_module_outgrows_the_limit() -> None:
    sizes = {p.relative_to(ROOT.parent): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    too_long = {str(p): n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"split these modules (> {MAX_MODULE_LINES} lines): {too_long}"
