"""Every committed sweep file plans without error (the dry run: names, parameters, options and
identities), and one entry of each trains one step through the real loop on tiny stand-in images
(the real datasets and hub weights are GPU-scale or absent here; the method, backbone, split and
options are the file's own)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from _harness import one_thread  # noqa: F401 (module-wide fixture)
from torch.utils.data import TensorDataset

from adcbench.core.pipeline import Pipeline
from adcbench.data.task import get_task
from adcbench.sweep.grid import SweepError
from adcbench.sweep.sweepfile import load_sweep
from adcbench.train import RunConfig, run

SWEEPS = sorted((Path(__file__).parents[1] / "sweeps").glob("*.yaml"))


def plan(path: Path, seeds: list[int] | None = [0]):  # noqa: B006 (read only)
    """The file's runs; one seed unless asked (a seed adds nothing the planner checks). A file
    needing an optional extra that is not installed is skipped with the install command."""
    try:
        return load_sweep(path, RunConfig(out=None), {}, seeds)
    except SweepError as exc:
        if "unavailable" in str(exc) and "pip install" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_file_plans(path: Path) -> None:
    runs = plan(path)
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_paper_grids_state_the_papers_budget() -> None:
    for name in ("paper-cifar100", "paper-food101", "paper-imagenet"):
        cfgs = [r.cfg for r in plan(Path(__file__).parents[1] / "sweeps" / f"{name}.yaml", None)]
        assert {c.budget_epochs for c in cfgs} == {10.0} and {c.init for c in cfgs} == {"pretrained"}
        assert {c.seed for c in cfgs} == {42, 51, 114}
    cifar = [r.cfg for r in plan(Path(__file__).parents[1] / "sweeps" / "paper-cifar100.yaml")]
    assert {c.budget_accounting for c in cifar} == {"nominal", "measured"}
    assert {c.arch for c in cifar} == {"deit_tiny_patch16_224", "deit_small_patch16_224"}


@pytest.mark.parametrize("name", ["study-codecs", "study-extra"])
def test_the_studys_side_files_share_its_tasks_and_options(name: str) -> None:
    """The newer methods' study files are apart for their extra (codecs) or their seed count (extra)
    only: their runs must be comparable with the study's (same tasks, options, seeds among its)."""
    import yaml

    study, side = (yaml.safe_load((SWEEPS[0].parent / f"{n}.yaml").read_text()) for n in ("study", name))
    assert (side["tasks"], side["options"]) == (study["tasks"], study["options"])
    assert study["seeds"] == "0-2" and side["seeds"] == {"study-codecs": "0-2", "study-extra": 0}[name]
    assert not {m if isinstance(m, str) else m["method"] for m in side["methods"]} & {
        m if isinstance(m, str) else m["method"] for m in study["methods"]
    }


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_one_entry_trains_one_step(path: Path, monkeypatch) -> None:
    cfg = next(r.cfg for r in plan(path) if r.cfg.method != "none")
    cls = get_task(cfg.task)
    task = cls(**cfg.task_params)
    size, chans = task.image_size, getattr(task, "in_chans", 3)

    def tiny(self, split: str) -> TensorDataset:
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return TensorDataset(torch.rand(4, chans, size, size, generator=g), torch.arange(4) % task.num_classes)

    monkeypatch.setattr(cls, "load_split", tiny)
    monkeypatch.setattr(cls, "data_info", lambda self: {"source": "tiny stand-in"})
    small = dataclasses.replace(
        cfg,
        data=None,
        init="scratch",
        max_steps=1,
        batch_size=2,
        budget_bytes=None,
        budget_epochs=None,
        epochs=None,
        eval_samples=None,
        progress=False,
        out=None,
        threads=1,
        device="cpu",
    )
    record = run(small)
    assert (
        record["status"] == "completed"
        and record["steps"] == 1
        and record["method"] == Pipeline.from_spec(cfg.method).spec
    )
    assert record["model"]["arch"] == (cfg.arch or task.arch)


def test_the_committed_warm_starts_are_the_ones_the_study_loads(tmp_path, monkeypatch):
    """benchmarks/study.sh copies results/warmstarts/ into the cache so that every machine
    fine-tunes the same bits: each of the study's `--init warmstart:TASK` must find its file there
    under the name its recipe's key gives, with the sha256 that SHA256SUMS and the sidecar state,
    made at the thread count and by the command that study.sh's `pretrain` line asks for."""
    import hashlib
    import json

    import yaml

    from adcbench.core.params import parse_spec
    from adcbench.model.warmstart import checkpoint_path, warmstart_source

    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path))
    root = Path(__file__).parents[1]
    folder = root / "results" / "warmstarts"
    sums = {
        name: digest for digest, name in (line.split() for line in (folder / "SHA256SUMS").read_text().splitlines())
    }
    script = (root / "benchmarks" / "study.sh").read_text()
    for entry in yaml.safe_load((root / "sweeps" / "study.yaml").read_text())["tasks"]:
        [(name, params)] = parse_spec(entry["task"])
        source = warmstart_source(get_task(name)(**params), entry["init"])
        weights = folder / checkpoint_path(source).name
        meta = json.loads(weights.with_suffix(".json").read_text())
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == sums[weights.name] == meta["sha256"]
        assert meta["threads"] == 2 and meta["provenance"]["git_commit"]
        assert f"{meta['command']} --quiet" in script  # the line that would train it again
    assert sorted(sums) == sorted(p.name for p in folder.glob("*.safetensors"))
