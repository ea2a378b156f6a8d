"""Resumable runs: SIGKILL at a random step, restart, and the record is the uninterrupted one."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from adcbench.sweep.grid import make_run
from adcbench.sweep.state import statuses
from adcbench.train.checkpoint import BatchStream, read_sidecar, resumable_loader
from adcbench.train.config import RunConfig
from adcbench.train.loop import run

# adc: K-means on the client's generator, soft labels; eval under both policies; dropout via the
# global torch RNG would show up too. Few steps, small batches: a couple of seconds.
CFG = dict(method="adc:xi=0.25", max_steps=9, batch_size=16, eval_every=4, threads=1, progress=False)


def _comparable(rec: dict) -> dict:
    """The record minus what no two runs share: wall-clock times, provenance, the file name."""
    rec = json.loads(json.dumps(rec))
    for key in ("provenance", "runtime", "wall_s", "cpu_s", "record_file", "_file"):
        rec.pop(key, None)
    for h in rec["history"]:
        h.pop("wall_s")
        for key in ("wall_s", "network_s"):
            h.get("traffic", {}).pop(key, None)
    return rec


def test_resumable_loader_gives_the_plain_loaders_batches_and_resumes_mid_epoch():
    ds = TensorDataset(torch.arange(50), torch.arange(50))
    plain = DataLoader(ds, batch_size=8, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(3))
    expected = [b[0].tolist() for _ in range(3) for b in plain]  # committed records used this order
    stream = BatchStream(resumable_loader(ds, 8, 3), 3)
    got = []
    for i, (x, _) in enumerate(stream):
        got.append(x.tolist())
        if i == 8:  # mid second epoch: save the position, continue in a fresh stream
            state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in stream.state().items()}
            break
    resumed = BatchStream(resumable_loader(ds, 8, 3), 3)
    resumed.restore(state)
    got += [x.tolist() for x, _ in resumed]
    assert got == expected


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import adcbench.train.loop as loop
    from adcbench.train.config import RunConfig
    kill_at, out, ckpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    step_fn = loop.train_step
    def train_step(p, t, x, y, step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no finally, no record: a real crash
        return step_fn(p, t, x, y, step)
    loop.train_step = train_step
    loop.run(RunConfig(**{CFG}, out=out, checkpoint_dir=ckpt, checkpoint_every=3))
    """
)


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_restart_gives_the_uninterrupted_record(tmp_path):
    kill_at = random.Random().randint(4, 8)  # past the first checkpoint (step 3), before the end
    out, ckpt = str(tmp_path / "killed"), str(tmp_path / "ckpt")
    script = KILLER.replace("{CFG}", repr(CFG))
    proc = subprocess.run([sys.executable, "-c", script, str(kill_at), out, ckpt], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert not (tmp_path / "killed" / "digits.jsonl").exists()  # killed: no record at all
    cfg = RunConfig(**CFG, out=out, checkpoint_dir=ckpt, checkpoint_every=3)
    (status,) = statuses([make_run(cfg, "test")])
    # checkpoints every 3 steps and at every evaluation (4, 8): the last one before the kill
    assert status.state == "partial" and status.step == max(s for s in (3, 4, 6, 8) if s <= kill_at)

    resumed = run(cfg)
    assert resumed["provenance"]["resumed_from_step"] == status.step
    assert not list((tmp_path / "ckpt").iterdir())  # removed once the record is written
    uninterrupted = run(RunConfig(**CFG, out=str(tmp_path / "straight")))
    assert _comparable(resumed) == _comparable(uninterrupted), f"killed at step {kill_at}"


def test_pretraining_killed_midway_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from _taskdata import Tiny, layout, write_folder
    from safetensors.torch import load_file

    import adcbench.train.pretrain as pt

    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "ds", layout(n_train=6, n_test=2))
    kw = dict(epochs=3, lr=1e-3, seed=0, progress=False, checkpoint_every=2)  # 4 steps an epoch

    first = pt.pretrain(Tiny(data=str(root)), **kw)
    straight = load_file(str(first))
    first.unlink(), first.with_suffix(".json").unlink()  # as if it had never finished
    real_save = pt._save

    def crash_after_step_7(resume, steps, *a):
        real_save(resume, steps, *a)
        if steps == 7:  # mid second epoch, one step after the checkpoint at step 6
            raise KeyboardInterrupt

    monkeypatch.setattr(pt, "_save", crash_after_step_7)
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(Tiny(data=str(root)), **kw)
    assert read_sidecar(first.with_name(f"{first.stem}.resume.json"))["step"] == 6
    monkeypatch.setattr(pt, "_save", real_save)
    path = pt.pretrain(Tiny(data=str(root)), **kw)
    assert not list(path.parent.glob("*.resume.*"))  # removed once the weights are written
    resumed = load_file(str(path))
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert __import__("json").loads(path.with_suffix(".json").read_text())["steps"] == 12


def test_a_warm_start_resumes_only_at_the_thread_count_it_began_with(tmp_path, monkeypatch):
    """The weights' bits depend on torch's thread count: it is recorded, and a resume at another
    count (which would match no uninterrupted run) is refused before any data loads."""
    from _taskdata import Tiny, layout, write_folder

    import adcbench.train.pretrain as pt
    from adcbench.errors import ParamError

    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "ds", layout(n_train=6, n_test=2))
    kw = dict(epochs=2, lr=1e-3, seed=0, progress=False, checkpoint_every=2)  # 4 steps an epoch
    real_save = pt._save

    def crash_after_step_2(resume, steps, *a):
        real_save(resume, steps, *a)
        if steps == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(pt, "_save", crash_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(Tiny(data=str(root)), threads=1, **kw)
    monkeypatch.setattr(pt, "_save", real_save)
    monkeypatch.setattr(Tiny, "splits", lambda *a: pytest.fail("loaded data before refusing"))
    try:
        with pytest.raises(ParamError, match=r"began at 1 torch thread\(s\), not 2: resume it with --threads 1"):
            pt.pretrain(Tiny(data=str(root)), threads=2, **kw)
    finally:
        torch.set_num_threads(1)
    monkeypatch.undo()
    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path / "cache"))
    path = pt.pretrain(Tiny(data=str(root)), threads=1, **kw)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["threads"] == 1 and meta["command"].endswith("--threads 1") and meta["steps"] == 8
    # the finished checkpoint is the one-thread bits: asked for two, it is not handed out as them
    with pytest.raises(ParamError, match=r"trained at 1 torch thread\(s\), not 2: omit --threads to use it"):
        pt.pretrain(Tiny(data=str(root)), threads=2, **kw)
    assert pt.pretrain(Tiny(data=str(root)), **kw) == path == pt.pretrain(Tiny(data=str(root)), threads=1, **kw)
