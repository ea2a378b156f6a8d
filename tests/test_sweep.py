"""Sweeps: sweep-file errors, run identity, shards, skip-what-is-done, concurrent writers, launchers."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from adcbench.cli import main
from adcbench.core.records import append_record, config_hash, read_records
from adcbench.sweep.grid import Run, make_run
from adcbench.sweep.launch import Local
from adcbench.sweep.runner import prepare, run_sweep
from adcbench.sweep.state import shard, statuses
from adcbench.sweep.sweepfile import load_sweep
from adcbench.train.config import RunConfig
from adcbench.train.identity import NOT_IDENTITY, plan_identity

TINY = dict(max_steps=2, batch_size=16, eval_every=2, threads=1, progress=False)


def _file(tmp_path, text: str):
    path = tmp_path / "grid.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _sweep(*args: str):
    return CliRunner().invoke(main, ["sweep", *args])


GOOD = """\
tasks: [digits]
methods:
  - none
  - adc:xi={0.1,0.5}
seeds: 0-1
options:
  max-steps: 2
"""


@pytest.mark.parametrize(
    "text,line,needle",
    [
        (GOOD.replace("  - none", "  - adcc"), 3, "did you mean adc"),
        (GOOD.replace("[digits]", "[digitz]"), 1, "did you mean digits"),
        (GOOD.replace("xi={0.1,0.5}", "xj=0.1"), 4, "unknown parameter 'xj'"),
        (GOOD.replace("max-steps: 2", "max-step: 2"), 7, "did you mean max-steps"),
        (GOOD.replace("max-steps: 2", "lr: -1"), 7, "lr=-1.0 is out of range"),
        (GOOD.replace("max-steps: 2", "max-steps: many"), 7, "'many' is not int"),
        (GOOD.replace("max-steps: 2", "budget-bytes: lots"), 7, "not a byte count"),
        (GOOD.replace("seeds: 0-1", "seeds: 3-1"), 5, "ascending range"),
        (GOOD.replace("seeds: 0-1", "seed: 0"), 5, "did you mean seeds"),
        (GOOD.replace("  - none", "  - {method: none, epocs: 2}"), 3, "did you mean epochs"),
        (GOOD.replace("  - none", "  - [none"), 4, "not valid YAML"),
    ],
)
def test_sweep_file_errors_exit_2_with_file_line_and_closest_name(tmp_path, text, line, needle):
    path = _file(tmp_path, text)
    r = _sweep(str(path), "--dry-run", "--out", str(tmp_path / "res"))
    assert r.exit_code == 2, r.output
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and f"{path}:{line}:" in lines[0] and needle in lines[0], r.stderr
    assert not (tmp_path / "res").exists()  # nothing ran


@pytest.mark.parametrize("seeds", ["3-1", "a", "1,,2", "0-", "1,1", "-1"])
def test_malformed_seeds_exit_2(seeds):
    r = _sweep("--method", "none", "--seeds", seeds, "--dry-run")
    assert r.exit_code == 2 and "seeds" in r.stderr, r.output


def test_sweep_file_grid_overrides_and_dry_run(tmp_path):
    path = _file(
        tmp_path,
        """\
        methods:
          - none
          - {method: "quant:bits={2,4}", lr: 0.002}
        seeds: [0, 1]
        options: {max-steps: 3, lr: [0.001, 0.003]}
        """,
    )
    runs = load_sweep(path, RunConfig(out=str(tmp_path)), {})
    # none: 2 lrs x 2 seeds; quant: its own lr replaces the axis, 2 specs x 2 seeds
    assert len(runs) == 8 and len({r.run_id for r in runs}) == 8
    assert {r.cfg.lr for r in runs if r.spec.startswith("quant")} == {0.002}
    assert {r.cfg.lr for r in runs if r.spec == "none"} == {0.001, 0.003}
    fixed = load_sweep(path, RunConfig(out=str(tmp_path), lr=0.01), {"lr": 0.01})  # the command line wins
    assert {r.cfg.lr for r in fixed} == {0.01} and len(fixed) == 6
    r = _sweep(str(path), "--dry-run", "--out", str(tmp_path))
    assert r.exit_code == 0 and "total: 8 runs (8 todo)" in r.output and r.output.count(" todo\n") == 8


def _alternative(name: str, value):
    table = {"method": "adc", "task_params": {"size": 8}, "data": "/x", "eval_policy": "raw", "init": "/w.safetensors"}
    table |= {"budget_accounting": "nominal", "arch": "vit_tiny_patch16_224", "device": "cuda", "task": "digits"}
    table |= {"precision": "bf16", "wire_dtype": "float16", "final_eval": "subset", "eval_schedule": "log"}
    table |= {"history_policy": "deployed"}
    if name in table:
        return table[name]
    if isinstance(value, bool):
        return not value
    if name == "val_fraction":
        return 0.25
    return (value or 3) + 1 if isinstance(value, (int, float)) or value is None else f"{value}-other"


def test_config_hash_covers_every_option_that_can_change_a_result():
    base = RunConfig(method="none")
    h0 = config_hash(plan_identity(base))
    for field in dataclasses.fields(RunConfig):
        if field.name in NOT_IDENTITY or field.name == "task":
            continue
        cfg = dataclasses.replace(base, **{field.name: _alternative(field.name, getattr(base, field.name))})
        if field.name == "task_params":
            continue  # digits has no parameters; covered by the task-spec test in test_registry_params
        assert config_hash(plan_identity(cfg)) != h0, field.name
    for field in NOT_IDENTITY - {"seed"}:
        cfg = dataclasses.replace(base, **{field: _alternative(field, getattr(base, field))})
        assert config_hash(plan_identity(cfg)) == h0, field
    # explicit defaults are the same run as omitted ones
    assert config_hash(plan_identity(dataclasses.replace(base, lr=1e-3, batch_size=64))) == h0


def _grid(n_methods: int = 3, seeds: int = 3) -> list[Run]:
    specs = ["none", "adc:xi=0.5", "quant:bits=4", "topk:ratio=0.1"][:n_methods]
    return [make_run(RunConfig(method=m, seed=s), "test") for m in specs for s in range(seeds)]


def test_shards_partition_the_grid_deterministically_and_balanced():
    grid = _grid()
    ids = [r.run_id for r in grid]
    for n in (1, 2, 4, 9, 11):
        parts = [[r.run_id for r in shard(grid, (i, n))] for i in range(n)]
        assert sorted(x for p in parts for x in p) == sorted(ids)  # union = grid, no overlap
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        assert parts == [[r.run_id for r in shard(_grid(), (i, n))] for i in range(n)]
    assert _sweep("--method", "none", "--shard", "4/4", "--dry-run").exit_code == 2


@pytest.mark.slow
def test_second_sweep_runs_nothing_and_a_changed_option_is_a_new_run(tmp_path):
    base = RunConfig(out=str(tmp_path), **TINY)
    runs = prepare([make_run(dataclasses.replace(base, method=m), "t") for m in ("none", "quant:bits=4")], 1, False)
    first = run_sweep(runs, Local(), lambda s: None, progress=False)
    assert (first.done, first.skipped, first.failed) == (2, 0, [])
    again = run_sweep(runs, Local(), lambda s: None, progress=False)
    assert (again.done, again.skipped) == (0, 2) and len(read_records(tmp_path / "digits.jsonl")) == 2
    assert not list((tmp_path / "checkpoints").iterdir())  # removed on completion
    changed = [make_run(dataclasses.replace(r.cfg, lr=0.01), "t") for r in runs]
    assert [s.state for s in statuses(changed)] == ["todo", "todo"]
    forced = run_sweep(runs[:1], Local(), lambda s: None, progress=False, rerun=True)
    assert (forced.done, forced.skipped) == (1, 0) and len(read_records(tmp_path / "digits.jsonl")) == 3


def test_status_reads_records_by_their_recomputed_identity(tmp_path):
    from adcbench.train.checkpoint import write_sidecar

    run = make_run(RunConfig(method="adc:xi=0.5", seed=2, out=str(tmp_path)), "t")
    ident = plan_identity(run.cfg)
    path = tmp_path / "digits.jsonl"
    assert [str(s) for s in statuses([run])] == ["todo"]
    # a record from before a field joined the identity: no stored hash of this kind, extra model keys
    append_record(
        path,
        {
            **ident,
            "model": {**ident["model"], "depth": 6},
            "seed": 2,
            "config_hash": "old",
            "status": "failed",
            "error": "E: x",
        },
    )
    assert [(s.state, s.error) for s in statuses([run])] == [("failed", "E: x")]
    (tmp_path / "checkpoints").mkdir()
    write_sidecar(tmp_path / "checkpoints" / f"{run.run_id}.json", {"run": run.run_id, "step": 40})
    assert [str(s) for s in statuses(prepare([run], 1, False))] == ["partial at step 40"]
    append_record(path, {**ident, "seed": 3, "status": "completed"})  # another seed
    assert statuses([run])[0].state == "partial"
    append_record(path, {**ident, "seed": 2, "status": "completed"})
    assert statuses([run])[0].state == "done"


def test_a_failing_run_is_reported_and_does_not_stop_the_sweep(tmp_path, monkeypatch):
    import adcbench.sweep.launch as launch

    def fake(cfg):
        if cfg.method == "none":
            raise RuntimeError("boom\nsecond line")
        return {"final": {}, "bytes": {}}

    monkeypatch.setattr(launch, "train_run", fake)
    runs = [make_run(RunConfig(method=m, out=str(tmp_path)), "t") for m in ("none", "adc", "quant:bits=4")]
    lines: list[str] = []
    s = run_sweep(runs, Local(), lines.append, progress=False)
    assert s.done == 2 and [e for _, e in s.failed] == ["RuntimeError: boom"]
    assert "sweep: 2 done, 0 skipped, 1 failed" in "\n".join(lines) and "failed: digits none seed=0" in lines[-1]
    s = run_sweep(runs, Local(), lines.append, progress=False, fail_fast=True)
    assert s.done == 0 and len(s.failed) == 1


def _writer(args) -> None:
    path, who = args
    for i in range(50):
        append_record(path, {"writer": who, "i": i, "pad": "x" * 200})


def test_four_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_writer, [(path, w) for w in range(4)])
    recs = read_records(path)
    assert sorted((r["writer"], r["i"]) for r in recs) == [(w, i) for w in range(4) for i in range(50)]


def test_missing_launcher_extra_says_which_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "submitit", None)
    for name, extra in (("ray", ".[ray]"), ("slurm", ".[slurm]")):
        r = _sweep("--method", "none", "--launcher", name, "--max-steps", "1")
        assert r.exit_code == 2 and extra in r.stderr, r.output


def _two_by_two(tmp_path) -> list[Run]:
    base = RunConfig(out=str(tmp_path / "res"), **{**TINY, "max_steps": 1, "eval_every": 1})
    runs = [
        make_run(dataclasses.replace(base, method=m, seed=s), "t") for m in ("none", "quant:bits=4") for s in (0, 1)
    ]
    return prepare(runs, 1, False)


@pytest.mark.slow
def test_ray_launcher_runs_a_2x2_grid_on_a_local_ray(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from adcbench.sweep.launch import Ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    summary = run_sweep(_two_by_two(tmp_path), Ray(cpus=1), print, progress=False)
    assert (summary.done, summary.failed) == (4, [])
    recs = read_records(tmp_path / "res" / "digits.jsonl")  # appended by the driver
    assert sorted((r["method"], r["seed"]) for r in recs) == [
        ("none", 0),
        ("none", 1),
        ("quant:bits=4", 0),
        ("quant:bits=4", 1),
    ]


@pytest.mark.slow
def test_slurm_launcher_runs_on_submitits_local_executor(tmp_path):
    pytest.importorskip("submitit")
    from adcbench.sweep.launch import Slurm

    runs = _two_by_two(tmp_path)[::2]  # 2 runs: each local job is a fresh Python process
    summary = run_sweep(runs, Slurm(str(tmp_path / "slurm"), time_min=10, cluster="local"), print, progress=False)
    assert (summary.done, summary.failed) == (2, [])
    assert len(read_records(tmp_path / "res" / "digits.jsonl")) == 2  # written by the jobs themselves
    again = run_sweep(runs, Slurm(str(tmp_path / "slurm"), cluster="local"), print, progress=False)
    assert (again.done, again.skipped) == (0, 2)


@pytest.mark.slow
def test_jobs_run_at_once_with_the_cores_split_between_them(tmp_path, monkeypatch):
    import adcbench.sweep.launch as launch

    monkeypatch.setattr(launch, "cores", lambda: 4)
    runs = [dataclasses.replace(r, cfg=dataclasses.replace(r.cfg, threads=None)) for r in _two_by_two(tmp_path)[:2]]
    summary = run_sweep(runs, Local(jobs=2), print, progress=False)
    assert (summary.done, summary.failed) == (2, [])
    recs = read_records(tmp_path / "res" / "digits.jsonl")
    assert [r["provenance"]["torch_threads"] for r in recs] == [2, 2]  # cores // jobs
    assert [r["runtime"]["concurrent_runs"] for r in recs] == [2, 2]  # what their wall times shared


def test_the_committed_digits_grid_recognises_the_committed_records_as_done():
    """sweeps/digits.yaml is the grid behind results/digits.jsonl: with the identity resolved from
    every option, each committed record is still its run (a second regeneration runs nothing)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    runs = load_sweep(root / "sweeps" / "digits.yaml", RunConfig(out=str(root / "results")), {})
    assert len(runs) == 75
    stale = [f"{r.cfg.method} seed {r.cfg.seed}" for r, s in zip(runs, statuses(runs)) if s.state != "done"]
    assert stale == []  # regenerated under the final wire formats (benchmarks/digits_leaderboard.sh)
    smoke = load_sweep(root / "sweeps" / "digits-smoke.yaml", RunConfig(), {})
    assert len(smoke) == 8


def test_the_shard_examples_slice_the_grid_with_their_own_index():
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1] / "examples"
    job = yaml.safe_load((root / "k8s-indexed-job.yaml").read_text())
    args = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    n = re.search(r'--shard "\$\{JOB_COMPLETION_INDEX\}/(\d+)"', args)
    assert n and int(n.group(1)) == job["spec"]["completions"] and job["spec"]["completionMode"] == "Indexed"
    assert '--shard "$i/$n"' in (root / "slurm-array.sh").read_text()


def _children(pid: int) -> set[int]:
    """Process ids whose parent is `pid` (from /proc: Linux)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc (Linux)")
def test_killing_the_sweep_ends_its_workers_mid_run(tmp_path):
    """A killed `sweep --jobs 2` must not leave workers training and appending records."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sweep = _file(
        tmp_path, "tasks: [digits]\nmethods: [none, quant:bits=4]\nseeds: 0\noptions: {epochs: 1000, eval-every: 3}\n"
    )
    out = tmp_path / "res"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "adcbench.cli", "sweep", str(sweep), "--jobs", "2", "--threads", "1", "--quiet"]
    parent = subprocess.Popen([*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 1500  # a hang guard: slow under load, never a failure
        # Both runs are mid-training once each has written its first checkpoint (at step 3).
        while len(list((out / "checkpoints").glob("*.pt"))) < 2:
            assert parent.poll() is None, parent.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the runs never reached their first checkpoint"
            time.sleep(0.5)
        # the workers are the children of the sweep's fork server (launch.Local)
        servers = {p for p in _children(parent.pid) if b"forkserver" in Path(f"/proc/{p}/cmdline").read_bytes()}
        workers = set().union(*(_children(s) for s in servers))
        assert len(servers) == 1 and len(workers) == 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 120
    while (alive := {p for p in workers if Path(f"/proc/{p}").exists()}) and time.monotonic() < deadline:
        for p in alive:  # reap them if they became ours; otherwise init does
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, os.WNOHANG)
        time.sleep(0.5)
    for p in alive:  # a failing test leaves nothing training behind (they would run for hours)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    assert not alive, f"workers {sorted(alive)} outlived their sweep"
    records = out / "digits.jsonl"
    assert not records.exists() or read_records(records) == [], "a run's record was written after its sweep died"


def test_new_seeds_from_another_warm_start_are_refused_before_they_mix(tmp_path, monkeypatch):
    """The run id names `--init warmstart`, not the weights: a machine whose warm start came out
    differently must not append seeds to results averaged over the old one (exit 2, one line)."""
    import json

    import adcbench.sweep.state as state
    from adcbench.train.loop import run

    out = tmp_path / "res"
    rec = run(RunConfig(out=str(out), **TINY))  # a completed record, then made one from warm start aaa...
    rec["model"].update(init="warmstart", sha256="a" * 64, warmstart={"command": "adcbench pretrain --task digits"})
    (out / "digits.jsonl").write_text(json.dumps(rec) + "\n")
    runs = prepare([make_run(RunConfig(out=str(out), init="warmstart", seed=1, **TINY), "t")], 1, False)
    here = {"sha256": "b" * 64}
    monkeypatch.setattr(state, "find_warmstart", lambda *a: (Path("here.safetensors"), here))
    with pytest.raises(state.SweepError, match=r"sha256 aaaaaaaaaaaa, but this machine's .* is bbbbbbbbbbbb"):
        state.check_warm_starts(runs, statuses(runs))
    r = CliRunner().invoke(
        main, ["sweep", "--method", "none", "--init", "warmstart", "--seeds", "1", "--out", str(out)]
    )
    assert r.exit_code == 2 and "averaged over two backbones" in r.output and len(r.output.splitlines()) == 1
    here["sha256"] = "a" * 64  # the same warm start: nothing to refuse
    state.check_warm_starts(runs, statuses(runs))
