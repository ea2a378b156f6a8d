"""The CLI on real tasks: --data, --init warmstart after `adcbench pretrain`, one-line errors."""

from __future__ import annotations

import json

import pytest
from _taskdata import SHARED_DATA, isolated, write_folder  # noqa: F401
from click.testing import CliRunner
from test_tasks_train import cifar_layout

from adcbench.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_pretrain_then_run_from_the_warm_start(tmp_path):
    data = str(write_folder(tmp_path / "c", cifar_layout()))
    res = invoke(
        "run",
        "--method",
        "none",
        "--task",
        "cifar10",
        "--data",
        data,
        "--init",
        "warmstart",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--quiet",
        "--out",
        str(tmp_path / "r"),
    )
    assert res.exit_code == 2 and f"adcbench pretrain --task cifar10 --data {data}" in res.output
    res = invoke("pretrain", "--task", "cifar10", "--data", data, "--epochs", "1", "--batch-size", "4", "--quiet")
    assert res.exit_code == 0, res.output
    assert "warm start" in res.output and "1 epoch at" in res.output
    res = invoke(
        "run",
        "--method",
        "none",
        "--task",
        "cifar10",
        "--data",
        data,
        "--init",
        "warmstart",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--quiet",
        "--out",
        str(tmp_path / "r"),
    )
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "r" / "cifar10.jsonl").read_text().splitlines()[-1])
    assert record["model"]["init"] == "warmstart" and record["model"]["recipe"]["epochs"] == 1
    # the thread count that reproduces the warm start's bits travels with it (tests: 1, conftest.py)
    assert record["model"]["warmstart"]["threads"] == 1
    assert record["model"]["warmstart"]["git_commit"] == record["provenance"]["git_commit"]  # this checkout
    assert record["model"]["warmstart"]["command"].endswith(" --epochs 1 --batch-size 4 --threads 1")


def test_task_parameters_reach_the_task(tmp_path):
    data = str(write_folder(tmp_path / "c", cifar_layout()))
    res = invoke(
        "run",
        "--method",
        "none",
        "--task",
        "cifar10:augment=none",
        "--data",
        data,
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--quiet",
        "--out",
        str(tmp_path / "r"),
    )
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "r" / "cifar10.jsonl").read_text())
    assert record["task_params"]["augment"] == "none"
    res = invoke("run", "--task", "cifar10:preset=huge", "--data", data)
    assert res.exit_code == 2 and "cpu32, paper224" in res.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--task", "cifar10"], "ADCBENCH_CIFAR10=PATH"),
        (["run", "--task", "imagenet"], "HF_TOKEN"),
        (["run", "--task", "cifar10", "--data", "/no/such/place"], "does not exist"),
        (["pretrain", "--task", "imagenette"], "ADCBENCH_IMAGENETTE=PATH"),
    ],
)
def test_missing_data_exits_2_with_one_line(args, needle, monkeypatch):
    for env in ("ADCBENCH_CIFAR10", "ADCBENCH_IMAGENET", "ADCBENCH_IMAGENETTE"):
        monkeypatch.delenv(env, raising=False)
    res = invoke(*args)
    assert res.exit_code == 2 and needle in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("task, sub", [("cifar10", "cifar10-jpg"), ("imagenette", "imagenette2-224")])
def test_cli_run_on_the_real_archives(tmp_path, task, sub):
    if not (SHARED_DATA / sub).is_dir():
        pytest.skip(f"no ../shared/data/{sub}")
    res = invoke(
        "run",
        "--method",
        "none",
        "--task",
        task,
        "--data",
        str(SHARED_DATA / sub),
        "--max-steps",
        "1",
        "--val-fraction",
        "0.02",
        "--eval-samples",  # the archives' whole splits are the real-task tests' business, not the CLI's
        "64",
        "--final-eval-samples",
        "128",
        "--quiet",
        "--out",
        str(tmp_path),
    )
    assert res.exit_code == 0, res.output
    assert f"{task} none" in res.output
    record = json.loads((tmp_path / f"{task}.jsonl").read_text())
    assert record["eval_split"] == "val" and record["status"] == "completed"
    assert record["history"][-1]["eval_samples"] == 128
