"""A stand-in accelerator for CPU-only CI: tensors that say they live on `meta` but hold real CPU
data, and fail like CUDA does when they meet a CPU tensor.

The real `meta` device has no data (no `.item()`, no serialization), so a training step cannot run
on it. Here every tensor created on or moved to `meta` (`x.to("meta")`, `torch.zeros(...,
device="meta")`, `module.to("meta")`) becomes a `DeviceTensor`: it reports `device == meta`, computes
on a hidden CPU tensor, and any op that mixes it with a CPU tensor of one or more elements raises
`DeviceMismatch` -- CUDA's rule (0-dim CPU tensors mix freely; CPU index tensors may index a device
tensor). `.cpu()` returns a plain CPU tensor, and `.numpy()` fails, as on CUDA.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

DEVICE = torch.device("meta")
aten = torch.ops.aten

# Ops CUDA runs with CPU tensors among their arguments: advanced indexing (CPU indices are copied
# over) and `copy_`, which copies across devices by definition (`dev[i] = cpu_values`; CompressAI
# fills its CDF tables this way).
_CPU_INDEX_OK = {
    aten.index.Tensor,
    aten.index_put.default,
    aten.index_put_.default,
    aten._index_put_impl_.default,
    aten.copy_.default,
}


class DeviceMismatch(RuntimeError):
    pass


class DeviceTensor(torch.Tensor):
    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor) -> DeviceTensor:
        t = torch.Tensor._make_wrapper_subclass(
            cls,
            elem.shape,
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            device=DEVICE,
            requires_grad=elem.requires_grad,
        )
        t.elem = elem
        return t

    def tolist(self) -> Any:  # a device-to-host copy, as on CUDA
        return self.elem.tolist()

    def __repr__(self) -> str:
        return f"DeviceTensor({self.elem!r})"

    def __tensor_flatten__(self) -> tuple[list[str], None]:
        return ["elem"], None

    @staticmethod
    def __tensor_unflatten__(inner: dict[str, torch.Tensor], meta: Any, size: Any, stride: Any) -> DeviceTensor:
        return DeviceTensor(inner["elem"])

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return _run(func, args, kwargs or {})


def _is_device(d: Any) -> bool:
    return d is not None and torch.device(d).type == "meta"


def _tensors(a: Any) -> Iterator[torch.Tensor]:
    """Tensors among an op's arguments (aten arguments nest one list deep at most)."""
    if isinstance(a, torch.Tensor):
        yield a
    elif isinstance(a, (list, tuple)):
        for x in a:
            if isinstance(x, torch.Tensor):
                yield x


def _map(a: Any, fn: Any) -> Any:
    """`fn` over the tensors of an argument or output (torch's pytree is far slower here)."""
    if isinstance(a, torch.Tensor):
        return fn(a)
    if isinstance(a, (list, tuple)):
        return type(a)(_map(x, fn) for x in a)
    return a


def _unwrap(t: torch.Tensor) -> torch.Tensor:
    return t.elem if isinstance(t, DeviceTensor) else t


def _run(func: Any, args: tuple, kwargs: dict) -> Any:
    tensors = [t for a in (*args, *kwargs.values()) for t in _tensors(a)]
    on_device = any(isinstance(t, DeviceTensor) for t in tensors)
    if on_device and func not in _CPU_INDEX_OK:
        for t in tensors:
            if not isinstance(t, DeviceTensor) and t.dim() > 0:
                if t.device == DEVICE:  # what `torch.tensor(data, device=d)` makes here: no data
                    raise DeviceMismatch(
                        f"{func}: a data-less meta tensor of shape {tuple(t.shape)}: this harness cannot "
                        "stand in for `torch.tensor(data, device=d)`; write `torch.tensor(data).to(d)` "
                        "(the same on a real device)"
                    )
                raise DeviceMismatch(
                    f"{func}: a CPU tensor of shape {tuple(t.shape)} meets a device tensor "
                    "(CUDA raises 'Expected all tensors to be on the same device')"
                )
    to_device = _is_device(kwargs.get("device"))
    target_cpu = "device" in kwargs and not to_device
    if to_device:
        gen = kwargs.get("generator")
        if gen is not None and gen.device.type == "cpu":
            raise DeviceMismatch(f"{func}: a CPU generator draws on a device (CUDA rejects it)")
        kwargs = {**kwargs, "device": torch.device("cpu")}
    out = func(*[_map(a, _unwrap) for a in args], **{k: _map(v, _unwrap) for k, v in kwargs.items()})
    if target_cpu or not (on_device or to_device):
        return out  # `.cpu()`, `.to("cpu")`, or a CPU-only op
    return _map(out, DeviceTensor)


class _Mode(torch.utils._python_dispatch.TorchDispatchMode):
    """Catches what creates a device tensor from no device tensor: factories and `.to`."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return _run(func, args, kwargs or {})


def _from_data(make: Any) -> Any:
    """`torch.tensor(data, device=meta)` builds a data-less meta tensor without passing through
    the dispatch mode (CompressAI does this): build it on the CPU and move it, as CUDA would hold it."""

    def build(*args: Any, **kwargs: Any) -> Any:
        if _is_device(kwargs.get("device")):
            return make(*args, **{**kwargs, "device": None}).to(DEVICE)
        return make(*args, **kwargs)

    return build


@contextlib.contextmanager
def fake_device() -> Iterator[torch.device]:
    """Within this block, `meta` is a device with data that fails on any CPU/device mix."""
    real = torch.tensor, torch.as_tensor
    torch.tensor, torch.as_tensor = _from_data(torch.tensor), _from_data(torch.as_tensor)
    try:
        with _Mode():
            yield DEVICE
    finally:
        torch.tensor, torch.as_tensor = real
