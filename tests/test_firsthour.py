"""A new user's first hour: runs outside the committed study, options checked before any data
loads, one rate knob (`xi=`) for every lossy method, own images in one flag, warm starts named."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from _harness import make, one_thread  # noqa: F401
from _taskdata import encode, isolated, write_folder  # noqa: F401
from click.testing import CliRunner

from adcbench.cli import main
from adcbench.cli.options import DEFAULT_OUT, _task_spec
from adcbench.core.method import METHODS, Cut
from adcbench.core.pipeline import Pipeline, _none_stages
from adcbench.core.rate import analytic_step_bytes as _analytic
from adcbench.core.records import read_records
from adcbench.errors import AdcbenchError, ParamError, TrainingDivergedError
from adcbench.train import RunConfig, run

ROOT = Path(__file__).resolve().parents[1]
CUT = Cut(17, 64, 10, 64, 1)  # digits at split 3


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


# -- 1. ad-hoc runs never touch the committed results ---------------------------------------------
def test_adhoc_runs_default_to_a_git_ignored_folder():
    assert DEFAULT_OUT == RunConfig().out == "runs"
    if shutil.which("git") and (ROOT / ".git").exists():
        r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "runs/digits.jsonl"])
        assert r.returncode == 0, "runs/ must be git-ignored"


# -- 5. every option is checked before data or a model loads --------------------------------------
@pytest.fixture
def no_loading(monkeypatch):
    """Loading data or building the real backbone fails the test: errors must come first."""

    def boom(*a, **k):
        raise AssertionError("data or model loaded before the options were checked")

    monkeypatch.setattr("adcbench.data.task.Task.splits", boom)
    monkeypatch.setattr("adcbench.train.parties.build_backbone", boom)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--out", "FILE"], "cannot write records there"),
        (["--split", "99"], "split=99 is out of range; valid: 1..5"),
        (["--method", "topk:xi=0.1,ratio=0.2"], "either xi= or its native ratio="),
        (["--method", "none:xi=0.1"], "xi= does not apply"),
        (["--method", "quant:xi=2"], "'xi'=2.0 is out of range"),
        (["--eval-samples", "0"], "--eval-samples"),
        (["--init", "no/such.safetensors"], "no such file"),
        (["--init", "pretrained"], "needs a timm model name"),
    ],
)
def test_bad_options_exit_2_before_any_data_loads(tmp_path, no_loading, args, needle):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = [str(blocker / "sub") if a == "FILE" else a for a in args]
    r = invoke("run", "--quiet", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_diverged_loss_suggests_a_lower_lr_without_a_torch_warning():
    h = make("none")
    with torch.no_grad():
        for p in h.server.net.parameters():
            p.fill_(float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (torch's requires_grad one) fails the test
        with pytest.raises(TrainingDivergedError, match="try a lower --lr"):
            h.step()


# -- 4. one rate knob for every lossy method ------------------------------------------------------
def _ratio(spec: str) -> float:
    p = Pipeline.from_spec(spec)
    p.setup(CUT)
    return p.achieved_xi()


LOSSY = [n for n in METHODS.names() if getattr(METHODS.get(n), "rate_param", None)]


@pytest.mark.parametrize("name", LOSSY)
@pytest.mark.parametrize("xi", [0.03, 0.3])
def test_generic_xi_maps_to_the_nearest_native_setting(name, xi):
    knob, values = METHODS.get(name).rate_param
    if knob == "xi":
        return  # native: xi is the method's own knob
    pipe = Pipeline.from_spec(f"{name}:xi={xi}")
    pipe.setup(CUT)
    got = pipe.achieved_xi()
    assert pipe.spec == f"{name}:xi={xi:g}" and pipe.resolved()[0]["xi_target"] == xi
    # At least as near the target as any of the method's own listed operating points.
    best_listed = min(abs(math.log(_ratio(f"{name}:{knob}={v}") / xi)) for v in values)
    assert abs(math.log(got / xi)) <= best_listed + 1e-9
    # The achieved ratio is the analytic bytes against none's at the same cut.
    expect = sum(_analytic(pipe.stages, CUT, 64)) / sum(_analytic(_none_stages(), CUT, 64))
    assert got == pytest.approx(expect)


def test_generic_xi_is_close_where_the_knob_is_fine():
    for spec in ("topk:xi=0.05", "randtopk:xi=0.05", "topk:xi=0.05+quant:bits=8"):
        assert _ratio(spec) == pytest.approx(0.05, rel=0.05), spec


def test_methods_lists_eval_behaviour_deployment_policy_and_xi_table():
    out = invoke("methods", "topk").output
    assert "eval (compressed policy)" in out and "deployed accuracy: raw policy" in out
    assert "xi=0.05 -> ratio=" in out and "achieved xi" in out
    assert "deployed accuracy: compressed policy" in invoke("methods", "bottleneck").output
    assert "same algorithm as: tokenprune" in invoke("methods", "adc-token").output
    for name in METHODS.names():
        assert METHODS.get(name).deployment_policy in ("raw", "compressed"), name


def test_adc_token_and_tokenprune_are_the_same_algorithm():
    a, b = make("adc-token:xi=0.25"), make("tokenprune:ratio=0.25")
    for seed in range(3):
        assert a.step(seed=seed)[2] == pytest.approx(b.step(seed=seed)[2], abs=1e-6)


def test_xi_run_records_target_and_achieved_with_an_eval_subset(tmp_path):
    cfg = RunConfig(
        method="topk:xi=0.05",
        max_steps=2,
        eval_every=1,
        eval_samples=20,
        out=str(tmp_path),
        progress=False,
        eval_policy="raw",
    )
    rec = run(cfg)
    assert rec["method"] == "topk:xi=0.05" and rec["stages"][0]["xi_target"] == 0.05
    assert rec["xi_achieved"] == pytest.approx(_ratio("topk:xi=0.05"))
    assert rec["train"]["eval_samples"] == 20 and rec["train"]["final_eval"] == "full"
    # History on the fixed subset; the final evaluation on the whole test split (359 digits).
    assert [(h["step"], h["eval_samples"]) for h in rec["history"]] == [(1, 20), (2, 359)]
    assert rec["final"]["acc"] == rec["history"][-1]["acc"]
    (on_disk,) = read_records(tmp_path)
    assert on_disk["config_hash"] == rec["config_hash"]


# -- 2. own images: imagefolder and hf ------------------------------------------------------------
def _seven_classes(root: Path, per_class: int = 5) -> Path:
    files = {
        f"c{k}/{i}.png": encode((35 * k, 255 - 35 * k, 40 * i), 12 + k) for k in range(7) for i in range(per_class)
    }
    return write_folder(root, files)


def test_imagefolder_trains_on_seven_class_folders_in_one_command(tmp_path):
    data = _seven_classes(tmp_path / "pics")
    out = tmp_path / "out"
    r = invoke(
        "run", "--task", "imagefolder:size=16", "--data", str(data), "--max-steps", "2", "--out", str(out), "--quiet"
    )
    assert r.exit_code == 0, r.output
    (rec,) = read_records(out)
    assert rec["task"] == "imagefolder" and rec["cut"]["num_classes"] == 7 and rec["status"] == "completed"
    splits = rec["data_info"]["splits"]
    assert splits["train"]["images"] + splits["test"]["images"] == 35 and splits["test"]["images"] == 7
    assert rec["train"]["batch_size"] <= splits["train"]["images"]


def test_imagefolder_needs_two_classes_and_names_the_count(tmp_path):
    data = write_folder(tmp_path / "one", {"only/0.png": encode((1, 2, 3)), "only/1.png": encode((4, 5, 6))})
    r = invoke("run", "--task", "imagefolder", "--data", str(data), "--quiet")
    assert r.exit_code == 2 and "found 1 class;" in r.output


def test_hf_task_reads_a_saved_dataset_with_named_columns(tmp_path):
    import datasets

    feats = datasets.Features({"picture": datasets.Image(), "kind": datasets.ClassLabel(names=["a", "b", "c"])})

    def split(n):
        rows = [{"bytes": encode((80 * (i % 3), 9, 9)), "path": None} for i in range(n)]
        return datasets.Dataset.from_dict({"picture": rows, "kind": [i % 3 for i in range(n)]}, features=feats)

    datasets.DatasetDict({"train": split(9), "validation": split(6)}).save_to_disk(str(tmp_path / "ds"))
    cfg = RunConfig(
        method="none",
        task="hf",
        task_params={"image": "picture", "label": "kind", "size": "16"},
        data=str(tmp_path / "ds"),
        max_steps=1,
        out=None,
        progress=False,
    )
    rec = run(cfg)
    assert rec["cut"]["num_classes"] == 3 and rec["data_info"]["splits"]["test"]["images"] == 6
    bad = RunConfig(task="hf", task_params={"image": "nope"}, data=str(tmp_path / "ds"), out=None)
    with pytest.raises(AdcbenchError, match="no image column 'nope'"):
        run(bad)


def test_hf_dataset_flag_is_the_spec_shorthand(no_loading):
    r = invoke("run", "--task", "hf", "--dataset", "someone/pets", "--quiet")
    assert r.exit_code == 2 and "hub dataset someone/pets is not reachable" in r.output
    assert "not for --task digits" in invoke("run", "--dataset", "a/b", "--quiet").output


def test_hf_spec_takes_the_dataset_id_first():
    assert _task_spec("hf:someone/pets,label=breed") == ("hf", {"dataset": "someone/pets", "label": "breed"})
    assert _task_spec("hf:dataset=a/b") == ("hf", {"dataset": "a/b"})


# -- 6. warm starts: a partial recipe is never picked silently ------------------------------------
def test_warmstart_never_picks_a_partial_recipe(tmp_path):
    from adcbench.data.task import get_task
    from adcbench.model.warmstart import _model_config, checkpoint_path, default_recipe, find_warmstart

    task = get_task("digits")()
    partial = {**default_recipe(task), "max_steps": 5}
    path = checkpoint_path(task, recipe=partial)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    meta = {"recipe": partial, "model": _model_config(task, None), "created": "2026-01-01T00:00:00"}
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(AdcbenchError, match=r"only a partial warm start.*max_steps=5.*--init "):
        find_warmstart(task)
    full = {**default_recipe(task), "epochs": 1}
    other = checkpoint_path(task, recipe=full)
    other.write_bytes(b"weights")
    other.with_suffix(".json").write_text(json.dumps({**meta, "recipe": full}))
    assert find_warmstart(task)[0] == other  # a complete recipe is fine (and the run names it)


def test_a_run_names_its_warm_start_on_the_console(capsys):
    from adcbench.train.evaluation import say_warmstart

    say_warmstart(
        {
            "path": "/c/w.safetensors",
            "sha256": "abcdef0123456789",
            "recipe": {"epochs": 10, "lr": 1e-3, "seed": 0},
            "warmstart": {"final_test_accuracy": 0.8125},
        }
    )
    err = capsys.readouterr().err
    assert "/c/w.safetensors" in err and "epochs=10" in err and "0.8125" in err and "abcdef012345" in err


def test_param_error_is_an_adcbench_error():
    assert issubclass(ParamError, AdcbenchError)


def test_evaluation_shows_its_own_progress(capsys):
    from adcbench.train.evaluation import eval_progress

    with eval_progress(True, 3, "eval topk") as bar:
        for _ in range(3):
            bar.update(1)
    assert "eval topk" in capsys.readouterr().err
    with eval_progress(False, 3, "eval quiet") as bar:
        bar.update(3)
    assert "eval quiet" not in capsys.readouterr().err


def test_lazy_bad_images_are_counted_once_per_image_not_per_fetch():
    import numpy as np

    from adcbench.data.images import IMAGENET_MEAN, IMAGENET_STD, BatchTransform, LazyImageDataset

    payloads = [encode((9, 9, 9)), b"broken", encode((200, 9, 9)), encode((9, 200, 9))]
    ds = LazyImageDataset(
        payloads.__getitem__,
        str,
        np.arange(4) % 2,
        ["a", "b"],
        16,
        3,
        BatchTransform(16, IMAGENET_MEAN, IMAGENET_STD, train=False),
        "t",
    )
    with pytest.warns(UserWarning, match="corrupt"):
        for _epoch in range(3):
            for i in range(4):
                ds[i]
    assert ds.bad.report()["total"] == 4 and ds.bad.report()["skipped"] == 1
