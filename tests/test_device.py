"""Device-clean code: one full training step of every method with both halves on a non-CPU device.

CI has no GPU, so the device is `tests/_fakedevice.py`'s stand-in: tensors on `meta` that hold CPU
data and raise `DeviceMismatch` wherever a CPU tensor meets a device tensor, as CUDA does. The step
goes through the loop's own `build_parties` (model, method modules and optimizers moved by the
loop) and real bytes both ways. Where a CUDA device exists, the `gpu` tests run the same on it.
"""

from __future__ import annotations

import os
import types

import pytest
import torch
from _fakedevice import DeviceMismatch, DeviceTensor, fake_device
from _harness import one_thread  # noqa: F401 (module-wide fixture)
from torch.utils.data import TensorDataset

import adcbench.methods.adc as adc
from adcbench.core.method import METHODS
from adcbench.core.pipeline import LosslessStage
from adcbench.data.imagetask import loader_workers
from adcbench.errors import AdcbenchError, ParamError
from adcbench.tasks.digits import Digits
from adcbench.train import parties as loop  # where the run is built (device, loaders)
from adcbench.train.config import parse_device
from adcbench.train.loop import RunConfig, build_parties, train_step
from adcbench.transport import Loopback

SPECS = [f"quant:bits=4+{n}" if issubclass(METHODS.get(n), LosslessStage) else n for n in METHODS.names()]
# Code paths the defaults do not take: hard labels, stochastic rounding, all mass off the top-k set.
SPECS += ["adc:labels=hard", "quant:bits=4,rounding=stochastic", "randtopk:alpha=1.0", "adc+quant:bits=8"]


class _Recording(Loopback):
    """Keeps the last message of each direction (the loopback hands each one over once)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, bytes] = {}

    def recv(self, direction: str) -> bytes:
        self.last[direction] = super().recv(direction)
        return self.last[direction]


def _step(spec: str, device: torch.device | None, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes, bytes]:
    """Build the parties on `device` (None: CPU), train one step, evaluate 8 samples both ways.
    Returns (forward bytes, gradient bytes, compressed-eval bytes)."""
    if device is not None:
        monkeypatch.setattr(loop, "_device", lambda cfg: device)
    p = build_parties(RunConfig(method=spec, task="digits", batch_size=16, out=None, progress=False))
    x, y = next(iter(p.train_loader))
    transport = _Recording()
    train_step(p, transport, x, y, 0)
    for pipe in (p.raw_pipeline, p.pipeline):
        pred = p.server.predict(p.client.forward_eval(x[:8], pipe), pipe)
    if device is not None:
        for module in (p.client.net, p.server.net, *p.pipeline.modules("client"), *p.pipeline.modules("server")):
            assert all(isinstance(w, DeviceTensor) for w in module.parameters()), "a parameter stayed on the CPU"
    return transport.last["fwd"], transport.last["bwd"], pred


@pytest.fixture
def small_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digits task on 32 random images with a 2-block, 32-wide ViT: the device stand-in
    dispatches every op in Python, so a small model keeps a step of every method fast."""
    kwargs = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
    monkeypatch.setattr(Digits, "arch_kwargs", kwargs)
    monkeypatch.setattr(Digits, "split_index", 1)
    data = TensorDataset(torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 10)
    monkeypatch.setattr(Digits, "load_split", lambda self, split: data)


@pytest.mark.parametrize("spec", SPECS)
def test_one_step_on_device(spec: str, monkeypatch: pytest.MonkeyPatch, small_digits: None) -> None:
    with fake_device() as device:
        fwd, bwd, pred = _step(spec, device, monkeypatch)
    assert fwd and bwd and pred


def test_fake_device_fails_like_cuda() -> None:
    """The stand-in must catch what CUDA catches, or the test above proves nothing."""
    with fake_device() as device:
        a = torch.ones(4, device=device)
        assert isinstance(a, DeviceTensor) and a.device == device
        with pytest.raises(DeviceMismatch):
            a + torch.ones(4)  # noqa: B018
        with pytest.raises(DeviceMismatch):
            torch.ones(4, 4) @ torch.ones(4, 4).to(device)  # noqa: B018
        with pytest.raises(DeviceMismatch):
            a.gather(0, torch.zeros(2, dtype=torch.long))
        assert float((a * torch.tensor(2.0)).sum()) == 8.0  # 0-dim CPU tensors mix, as on CUDA
        assert a[torch.tensor([0, 1])].shape == (2,)  # CPU index tensors index device tensors
        back = a.cpu()
        assert type(back) is torch.Tensor and back.device.type == "cpu"
        with pytest.raises((RuntimeError, TypeError)):
            a.numpy()


def test_a_device_bug_is_caught(monkeypatch: pytest.MonkeyPatch, small_digits: None) -> None:
    """The planted bug of issue 15: token selection's index tensor built on the CPU."""
    real_arange = torch.arange
    monkeypatch.setattr(adc.torch, "arange", lambda *a, device=None, **kw: real_arange(*a, **kw))
    with fake_device() as device, pytest.raises(DeviceMismatch):
        _step("adc", device, monkeypatch)


def test_device_names_are_checked() -> None:
    assert parse_device("cpu") == torch.device("cpu")
    with pytest.raises(ParamError, match="not a device"):
        parse_device("tpu")
    with pytest.raises(ParamError, match="not a device adcbench runs on"):
        parse_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(AdcbenchError, match="no CUDA device"):
            parse_device("cuda:1")
    if not torch.backends.mps.is_available():
        with pytest.raises(AdcbenchError, match="no MPS"):
            parse_device("mps")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("spec", SPECS)
def test_one_step_on_cuda(spec: str, precision: str) -> None:
    cfg = RunConfig(method=spec, task="digits", batch_size=16, max_steps=2, eval_every=2, out=None, progress=False)
    cfg.device, cfg.precision = "cuda", precision
    rec = loop.run(cfg)
    assert rec["status"] == "completed" and rec["steps"] == 2


def test_loaders_follow_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU: the task's workers, unpinned. CUDA: every CPU of this GPU's share, pinned, persistent."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    decoding, in_memory = types.SimpleNamespace(num_workers=3), types.SimpleNamespace(num_workers=0)
    assert loop._loader_options(decoding, torch.device("cpu")) == {
        "num_workers": 3,
        "pin_memory": False,
        "persistent_workers": True,
        "prefetch_factor": 4,
    }
    assert loop._loader_options(decoding, torch.device("cuda")) == {
        "num_workers": 15,  # 32 CPUs / 2 GPUs, less one for the training process
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": 4,
    }
    assert loop._loader_options(in_memory, torch.device("cuda")) == {"num_workers": 0, "pin_memory": True}
    assert loader_workers() == 4  # CPU training keeps its cap
