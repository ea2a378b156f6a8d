import os

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


def test_read_records_reports_bad_lines(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match="x.jsonl:2"):
        read_records(p)
