from __future__ import annotations

import os

# One intra-op thread per test process, and for the CLI subprocesses the tests start (they inherit
# the environment): the models are tiny, and a thread pool per process on a busy 2-core machine
# made the suite 3-7x slower (issue 16). Set before torch is imported, so torch reads it too;
# parallelism comes from processes instead (`pytest -n 2`, pytest-xdist). An explicit setting wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    # Here, not at import: xdist's controller loads this file too, and runs no test (torch's
    # import is seconds of CPU that the two workers need at start-up).
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests never reach a hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def real_data_cache(tmp_path_factory) -> str:
    """One cache for the tests of the real archives (../shared/data): decoding CIFAR-10's 60,000
    JPEGs costs about 15 s, once per test session instead of once per test. The archives are
    read-only and the decoded cache is keyed by their identity, so sharing it hides nothing. Under
    pytest-xdist the workers share it too (their base folders' parent is the session's): the
    first to need a split decodes it, the other waits for that decode (data/sources/base.py)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / "real-data-cache"
    path.mkdir(exist_ok=True)
    return str(path)


@pytest.fixture(autouse=True)
def _real_data_cache(request, monkeypatch):
    if request.node.get_closest_marker("shared_data"):
        monkeypatch.setenv("ADCBENCH_CACHE", request.getfixturevalue("real_data_cache"))


def tiny_vit(depth: int = 4, dim: int = 32, heads: int = 2, classes: int = 10, **kw) -> VisionTransformer:
    import torch
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        img_size=8, patch_size=2, in_chans=1, embed_dim=dim, depth=depth, num_heads=heads, num_classes=classes, **kw
    )


def _unavailable() -> dict[str, str]:
    """Registered methods whose optional dependencies are missing -> the reason (install command)."""
    from adcbench.core.method import METHODS
    from adcbench.core.params import missing_modules, unavailable_text

    out = {}
    for name in METHODS.names():
        cls = METHODS.get(name)
        if missing := missing_modules(getattr(cls, "requires", ())):
            out[name] = unavailable_text(name, missing, getattr(cls, "install", ""))
    return out


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001 (pytest hook)
    """A registry-wide test of a method that cannot be built here (an optional extra is not
    installed) is skipped with the install command, not failed: any string parameter naming it
    as a stage (`entropy-code`, `bottleneck+entropy-code:lambda=0.1`) marks the test.

    The end-to-end trainings (`slow`) run first: with `pytest -n 2` a minute-long test handed out
    last keeps one worker busy while the other has nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise
    unavailable = _unavailable()
    for item in items if unavailable else []:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for value in params.values():
            if not isinstance(value, str):
                continue
            stages = {part.partition(":")[0] for part in value.split("+")}
            hit = next((n for n in stages if n in unavailable), None)
            if hit:
                item.add_marker(pytest.mark.skip(reason=unavailable[hit]))
                break
