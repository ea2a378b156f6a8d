import os
import subprocess

import pytest

from adcbench.core.records import append_record, config_hash, read_records


def test_append_is_atomic_and_survives_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    append_record(path, {"a": 1})
    append_record(path, {"a": 2})

    def boom(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        append_record(path, {"a": 3})
    monkeypatch.undo()
    assert [r["a"] for r in read_records(path)] == [1, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_records_are_strict_json(tmp_path):
    with pytest.raises(ValueError):
        append_record(tmp_path / "r.jsonl", {"acc": float("nan")})
    assert not (tmp_path / "r.jsonl").exists() or read_records(tmp_path / "r.jsonl") == []


def test_config_hash_stable_and_order_free():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_read_records_skips_a_corrupt_line_and_names_it(tmp_path, capsys):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\nnot json\n[1]\n{"a": 4}\n')
    assert [r["a"] for r in read_records(p)] == [1, 4]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "x.jsonl:2" in err[0] and "x.jsonl:3" in err[1]


def test_record_file_keeps_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = append_record(tmp_path / "r.jsonl", {"a": 1})
        assert path.stat().st_mode & 0o777 == 0o644
        os.chmod(path, 0o640)
        append_record(path, {"a": 2})
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_provenance_names_the_code_the_process_loaded_not_a_later_commit(monkeypatch):
    """A sweep's workers run the code they imported; commits landing meanwhile must not relabel
    their records."""
    from adcbench.core import records

    heads = iter(["", "aaaa", " M adcbench/x.py", "bbbb"])  # status, rev-parse; then a later commit
    monkeypatch.setattr(records, "_git", lambda root, *args: next(heads))
    records.code_state.cache_clear()
    try:
        first, later = records.provenance("cpu"), records.provenance("cpu")
    finally:
        records.code_state.cache_clear()
    assert (first["git_commit"], first["git_dirty"]) == (later["git_commit"], later["git_dirty"]) == ("aaaa", False)


def test_a_checkout_is_dirty_when_code_changes_not_when_results_land(tmp_path):
    """A study appends records to the tracked results/ between its sweeps: that must not mark the
    next sweep's records as run from modified code, while any other tracked change must."""
    from adcbench.core.records import checkout_state

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "toy.jsonl").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    commit, dirty = checkout_state(tmp_path)
    assert len(commit or "") == 40 and not dirty
    (tmp_path / "results" / "toy.jsonl").write_text("{}\n{}\n")
    (tmp_path / "untracked.py").write_text("")
    assert checkout_state(tmp_path)[1] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert checkout_state(tmp_path)[1] is True
