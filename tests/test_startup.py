"""Start-up and machine fit (issue 11): listings and user errors answer from the cached catalog
without importing torch; the default thread count fits the cores the process may use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from adcbench.cli import catalog as cat
from adcbench.cli import main
from adcbench.train import runtime

METHOD_NAMES = cat.names("method")

PROBE = """
import sys
from click.testing import CliRunner
from adcbench.cli import main
runner = CliRunner()
assert runner.invoke(main, ["methods"]).exit_code == 0
assert "tokenprune" in runner.invoke(main, ["methods"]).output
for args in (
    ["run", "--method", "adcc"],
    ["run", "--method", "adc:xi=3"],
    ["sweep", "--method", "adc:xi={0.1,7}"],
    ["run", "--split", "6"],
    ["run", "--task", "cifar10", "--data", "/no/such/place"],
    ["run", "--init", "/no/such/weights.pt"],
    ["run", "--init", "pretrained"],
    ["run", "--arch", "deit_tiny_patch16_22"],
    ["run", "--eval-samples", "100", "--final-eval-samples", "10"],
    ["run", "--device", "cuda"],  # the probe's environment hides every CUDA device
    ["run", "--device", "gpu"],
    ["run", "--task", "cifar100"],  # no local data, and the probe's hub endpoint refuses
    ["run", "--method", "splitfc", "--budget-accounting", "nominal", "--budget-bytes", "1M"],
):
    r = runner.invoke(main, args)
    assert r.exit_code == 2, (args, r.output)
print([m for m in ("torch", "timm", "sklearn") if m in sys.modules])
"""


def test_listing_and_user_errors_do_not_import_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(cat, "_memo", None)
    cat.catalog()  # the first call builds the catalog from the live registries and stores it
    assert list(tmp_path.glob("catalog/*.json"))
    t0 = time.perf_counter()
    env = {
        k: v for k, v in os.environ.items() if k not in ("ADCBENCH_CIFAR100", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    }
    env.update(CUDA_VISIBLE_DEVICES="", HF_ENDPOINT="http://127.0.0.1:9")  # port 9: refused at once
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stderr  # nothing imported torch, timm or scikit-learn
    assert time.perf_counter() - t0 < 20  # generous: ~0.3 s on an idle core


def test_catalog_key_follows_the_method_sources(monkeypatch):
    src = Path(cat.importlib.util.find_spec("adcbench.methods").submodule_search_locations[0]) / "none.py"
    st = src.stat()
    before = cat._key()
    try:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert cat._key() != before  # an edited method rebuilds the catalog
    finally:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cat._key() == before


def test_catalog_checks_like_the_registry(tmp_path, monkeypatch):
    from adcbench.core.pipeline import Pipeline
    from adcbench.errors import AdcbenchError

    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(cat, "_memo", None)
    for spec in ("adcc", "adc:xi=3", "adc:bogus=1", "quant:bits=x", "adc:rule=Z+quant:bits=8"):
        with pytest.raises(AdcbenchError) as fast:
            cat.check("method", spec)
        with pytest.raises(AdcbenchError) as live:
            Pipeline.from_spec(spec)
        assert str(fast.value) == str(live.value)
    cat.check("method", "adc:xi=0.1+quant:bits=8+zstd")
    cat.check("task", "imagenette:preset=cpu112")


def test_catalog_split_check_matches_the_models(tmp_path, monkeypatch):
    """A --split the backbone cannot take fails from the catalog with the model's own message;
    where a task parameter or --arch could change the model, the check is left to the model."""
    from adcbench.data.task import get_task
    from adcbench.errors import AdcbenchError
    from adcbench.model.backbones import probe_cut

    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(cat, "_memo", None)
    with pytest.raises(AdcbenchError) as fast:
        cat.check_split("digits", 6, None)
    with pytest.raises(AdcbenchError) as model:
        probe_cut(get_task("digits")(), None, 6)
    assert str(fast.value) == str(model.value)
    for split in (1, 5):
        cat.check_split("digits", split, None)
    cat.check_split("digits", 6, "vit_small_patch16_224")  # another backbone: the model decides
    cat.check_split("cifar10:preset=cpu32", 60, None)  # task parameters may change the model


@pytest.mark.parametrize("cores,concurrent,expected", [(2, 1, 2), (2, 3, 1), (16, 4, 4), (1.5, 1, 1), (0.5, 1, 1)])
def test_default_threads(cores, concurrent, expected):
    assert runtime.default_threads(cores, concurrent) == expected


def test_threads_follow_affinity_quota_and_concurrent_runs(monkeypatch):
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: 3.0)
    monkeypatch.setenv(runtime.CONCURRENT_ENV, "2")
    assert runtime.available_cores() == 3.0
    assert runtime.default_threads() == 1
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: None)
    assert runtime.default_threads() == 2


def test_omp_num_threads_is_honoured_unless_threads_is_given(monkeypatch):
    """Two xdist workers each defaulting to every core ran the suite 4.7x slower than serial."""
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: None)
    prev = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        r = runtime.set_threads(None)
        assert (r["threads"], r["threads_from"], torch.get_num_threads()) == (1, "OMP_NUM_THREADS", 1)
        assert runtime.set_threads(3)["threads"] == 3 == torch.get_num_threads()  # --threads wins
        for unset in ("", "0", "x"):
            monkeypatch.setenv("OMP_NUM_THREADS", unset)
            assert runtime.set_threads(None)["threads"] == 4  # the cores' default
    finally:
        torch.set_num_threads(prev)


def test_oversubscription_warns_once(monkeypatch):
    monkeypatch.setattr(runtime, "_warned", False)
    busy = {"threads": 2, "cores_available": 2, "load_1min": 6.0}
    with pytest.warns(RuntimeWarning, match="load average 6.0"):
        runtime.warn_if_oversubscribed(busy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runtime.warn_if_oversubscribed(busy)  # once per process
        monkeypatch.setattr(runtime, "_warned", False)
        runtime.warn_if_oversubscribed({"threads": 1, "cores_available": 2, "load_1min": 0.3})


def test_unknown_arch_suggests_the_closest_timm_model(tmp_path, monkeypatch):
    from adcbench.errors import UnknownNameError
    from adcbench.model.vit import create_vit

    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(cat, "_memo", None)
    r = CliRunner().invoke(main, ["run", "--arch", "deit_tiny_patch16_22"])
    assert r.exit_code == 2 and "did you mean deit_tiny_patch16_224" in r.stderr, r.output
    with pytest.raises(UnknownNameError) as slow:  # the model's own check says the same
        create_vit("deit_tiny_patch16_22", 10)
    assert str(slow.value) in r.stderr


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_nominal_check_matches_the_built_chain(name):
    """`--budget-accounting nominal` is refused from the catalog exactly where the built chain
    (train/parties.py) has no nominal ratio, with the same message, for every registered stage."""
    from _harness import make

    from adcbench.errors import ParamError

    spec = f"quant:bits=4+{name}" if cat.entries("method", [name])[name]["lossless"] else name
    if missing := cat.missing_modules(cat.entries("method", [name])[name]["requires"]):
        pytest.skip(f"{name} needs {missing}")
    chain_has_one = make(spec).pipeline.nominal_ratio() is not None
    if chain_has_one:
        cat.check_nominal(spec, "nominal")
    else:
        with pytest.raises(ParamError, match=f"^{re.escape(spec)} has no nominal ratio in the paper"):
            cat.check_nominal(spec, "nominal")
    cat.check_nominal(spec, "measured")


def test_data_check_matches_the_task_lookup(monkeypatch, tmp_path):
    """A task with no --data, no environment variable, no default path and an unreachable hub
    fails from the catalog with the message the task itself gives when it looks; any of the
    four present, the run decides."""
    from adcbench.data.task import get_task
    from adcbench.errors import DatasetNotFoundError

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    checked = 0
    for name in cat.names("task"):
        lookup = cat.entries("task", [name])[name].get("data")
        if not lookup or any(Path(p).exists() for p in lookup["defaults"]):
            continue
        if lookup["env"]:
            monkeypatch.delenv(lookup["env"], raising=False)
        with pytest.raises(DatasetNotFoundError) as fast:
            cat.check_data(name, None)
        with pytest.raises(DatasetNotFoundError) as live:
            get_task(name)().resolve_source()
        assert str(live.value) == str(fast.value)
        cat.check_data(name, str(tmp_path))  # --data given: the run checks the folder
        if lookup["env"]:
            monkeypatch.setenv(lookup["env"], str(tmp_path))
            cat.check_data(name, None)
        checked += 1
    assert checked >= 5  # cifar10, cifar100, imagenette, food101, imagenet, imagefolder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an offline hub may hold a cached copy
    cat.check_data("cifar100", None)


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "mps", "gpu", "cuda:x", "xpu", "cpu:0"])
def test_device_check_agrees_with_torch(name, monkeypatch):
    """The torch-free --device check raises only what train/config.parse_device raises."""
    from adcbench.core.devices import check_device_name
    from adcbench.errors import AdcbenchError
    from adcbench.train.config import parse_device

    try:
        parse_device(name)
        live = None
    except AdcbenchError as exc:
        live = str(exc)
    try:
        check_device_name(name)
    except AdcbenchError as exc:
        assert str(exc) == live
