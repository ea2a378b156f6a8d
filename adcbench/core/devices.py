"""`--device` checked without torch, so that a wrong device costs no multi-second import.

The syntax is checked fully here. Availability is checked where it can be answered cheaply and
surely: no CUDA driver library (or one that reports no device, honouring CUDA_VISIBLE_DEVICES as
torch does) means no CUDA, and MPS exists only on macOS. Anything else that could still fail (a
CPU-only torch build beside a driver, too high an index) is left to train/config.parse_device,
which uses the same messages."""

from __future__ import annotations

import ctypes
import re
import sys

from adcbench.errors import AdcbenchError, ParamError

VALID = "cpu, cuda, cuda:N, mps"
_SYNTAX = re.compile(r"(cpu|mps|cuda)(?::(\d+))?")


def not_a_device(name: str) -> ParamError:
    return ParamError(f"--device {name!r} is not a device adcbench runs on; valid: {VALID}")


def no_cuda(name: str) -> AdcbenchError:
    return AdcbenchError(f"--device {name}, but no CUDA device is available here; use --device cpu")


def no_mps(name: str) -> AdcbenchError:
    return AdcbenchError(f"--device {name}, but no MPS (Apple GPU) device is available here; use --device cpu")


def cuda_driver_devices() -> int | None:
    """CUDA devices the driver reports (0 without a driver library), or None where the driver
    could not say (then torch decides)."""
    if sys.platform == "darwin":
        return 0  # no CUDA on macOS since CUDA 10.2
    try:
        lib = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    try:
        if lib.cuInit(0) != 0:  # e.g. CUDA_ERROR_NO_DEVICE (100) with CUDA_VISIBLE_DEVICES=""
            return 0
        return count.value if lib.cuDeviceGetCount(ctypes.byref(count)) == 0 else None
    except AttributeError:
        return None


def check_device_name(name: str) -> None:
    """Raise the error train/config.parse_device would, where it is certain without torch."""
    m = _SYNTAX.fullmatch(name.strip())
    if m is None:
        raise not_a_device(name)
    kind = m.group(1)
    if kind == "cuda" and cuda_driver_devices() == 0:
        raise no_cuda(name)
    if kind == "mps" and sys.platform != "darwin":
        raise no_mps(name)
