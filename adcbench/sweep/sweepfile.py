"""Sweep files: a committed grid in YAML, checked line by line before anything runs.

    tasks: [digits]                      # task specs, or {task: SPEC, <option>: value, ...}
    methods:                             # method specs (braces expand), or {method: SPEC, <option>: ...}
      - none
      - adc:xi={0.05,0.1}
      - {method: quant:bits=4, lr: 0.002}
    seeds: 0-2                           # 0 | 0,1,2 | 0-4 | [0, 1, 2]
    options: {epochs: 20, lr: [0.001, 0.003]}   # a list is a grid axis

Options are the run options of `adcbench run` spelled as on its command line (`max-steps`,
`budget-bytes`, `eval-policy`, ...) plus `preset` (the task's preset parameter). Precedence, low
to high: the file's `options`, the task entry's, the method entry's, options given explicitly on
the command line. The grid is tasks x methods (expanded) x option axes x seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import yaml

from adcbench.core.params import parse_spec
from adcbench.core.pipeline import Pipeline
from adcbench.errors import AdcbenchError
from adcbench.sweep.grid import (
    Run,
    SweepError,
    check_ranges,
    closest,
    dedupe,
    expand,
    make_run,
    one_line,
    option_value,
    parse_seeds,
)
from adcbench.train.config import RunConfig
from adcbench.train.identity import build_task

TOP_KEYS = ["name", "description", "tasks", "methods", "seeds", "options"]
Lines = dict[tuple[Any, ...], int]


class _File:
    """The parsed YAML and the line of every key and list item."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SweepError(f"{path}: cannot read the sweep file ({exc.strerror})") from None
        loader = yaml.SafeLoader(text)
        self.data: Any = None
        try:
            node = loader.get_single_node()
            self.data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SweepError(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML: {problem}") from None
        finally:
            loader.dispose()
        self.lines: Lines = {}
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, key: tuple[Any, ...]) -> None:
        self.lines.setdefault(key, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                self.lines[key + (k.value,)] = k.start_mark.line + 1
                self._walk(v, (*key, k.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*key, i))

    def where(self, *key: Any) -> str:
        while key and key not in self.lines:
            key = key[:-1]
        return f"{self.path}:{self.lines.get(key, 1)}"

    def fail(self, key: tuple[Any, ...], msg: str) -> SweepError:
        return SweepError(f"{self.where(*key)}: {msg}")


# An option set: field -> (values, the key path each value came from); several values = an axis.
Options = dict[str, tuple[list[Any], list[tuple[Any, ...]]]]


def _options(f: _File, mapping: dict[str, Any], key: tuple[Any, ...], skip: str | None = None) -> Options:
    out: Options = {}
    for name, value in mapping.items():
        if name == skip:
            continue
        values, keys = (
            (value, [(*key, name, i) for i in range(len(value))])
            if isinstance(value, list)
            else ([value], [(*key, name)])
        )
        if not values:
            raise f.fail((*key, name), f"{name}: an empty list")
        checked = []
        for v, k in zip(values, keys):
            try:
                field, v = option_value(str(name), v)
                if field != "preset":
                    check_ranges({field: v})
            except AdcbenchError as exc:
                raise f.fail(k, one_line(exc)) from None
            checked.append(v)
        out[field] = (checked, keys)
    return out


def _entries(f: _File, name: str, spec_key: str) -> list[tuple[str, Options, tuple[Any, ...]]]:
    """Task or method entries: (spec, the entry's own options, its key path)."""
    raw = f.data.get(name)
    if raw is None:
        raise f.fail((), f"no `{name}:` list")
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        key = (name, i) if isinstance(raw, list) else (name,)
        if isinstance(item, dict):
            if spec_key not in item:
                raise f.fail(key, f"an entry of `{name}` needs a `{spec_key}:` key")
            out.append((str(item[spec_key]), _options(f, item, key, skip=spec_key), key))
        elif isinstance(item, str):
            out.append((item, {}, key))
        else:
            raise f.fail(key, f"{item!r} is not a {spec_key} spec")
    return out


def _axes(*layers: Options) -> list[dict[str, tuple[Any, tuple[Any, ...]]]]:
    """Merge option layers (later wins) and expand list-valued options into their product."""
    merged: Options = {}
    for layer in layers:
        merged.update(layer)
    names = list(merged)
    combos = itertools.product(*(list(zip(*merged[n])) for n in names))
    return [dict(zip(names, combo)) for combo in combos]


def load_sweep(path: str | Path, base: RunConfig, fixed: dict[str, Any], seeds: list[int] | None = None) -> list[Run]:
    """The runs of a sweep file. `base` holds the command line's defaults, `fixed` the options
    given explicitly there (they win over the file); `seeds` replaces the file's seeds."""
    f = _File(path)
    if not isinstance(f.data, dict):
        raise f.fail((), "a sweep file is a mapping with `tasks:`, `methods:`, `seeds:`, `options:`")
    for k in f.data:
        if k not in TOP_KEYS:
            raise f.fail((k,), f"unknown key {k!r}; {closest(str(k), TOP_KEYS)}")
    if seeds is None:
        try:
            seeds = parse_seeds(f.data.get("seeds", 0))
        except SweepError as exc:
            raise f.fail(("seeds",), str(exc)) from None
    common = f.data.get("options") or {}
    if not isinstance(common, dict):
        raise f.fail(("options",), "`options:` is a mapping of option: value")
    options = _options(f, common, ("options",))
    if "tasks" in f.data:
        tasks = [(_check_task(f, spec, key, base), opts, key) for spec, opts, key in _entries(f, "tasks", "task")]
    else:  # the command line's --task
        tasks = [((base.task, base.task_params), {}, ())]
    runs: list[Run] = []
    for spec, m_opts, m_key in _entries(f, "methods", "method"):
        for one in _check_method(f, spec, m_key):
            for (task, t_params), t_opts, _ in tasks:
                for combo in _axes(options, t_opts, m_opts):
                    runs += _runs(f, one, task, t_params, combo, m_key, seeds, base, fixed)
    return dedupe(runs)


def _check_task(f: _File, spec: str, key: tuple[Any, ...], base: RunConfig) -> tuple[str, dict[str, Any]]:
    try:
        [(name, params)] = parse_spec(spec)
        build_task(dataclasses.replace(base, task=name, task_params=params))
    except ValueError:
        raise f.fail(key, f"a task spec has one part, got {spec!r}") from None
    except AdcbenchError as exc:
        raise f.fail(key, one_line(exc)) from None
    return name, params


def _check_method(f: _File, spec: str, key: tuple[Any, ...]) -> list[str]:
    try:
        specs = expand(spec)
        for s in specs:
            Pipeline.from_spec(s)
    except AdcbenchError as exc:
        raise f.fail(key, one_line(exc)) from None
    return specs


def _runs(
    f: _File,
    spec: str,
    task: str,
    task_params: dict[str, Any],
    combo: dict[str, tuple[Any, tuple[Any, ...]]],
    key: tuple[Any, ...],
    seeds: list[int],
    base: RunConfig,
    fixed: dict[str, Any],
) -> list[Run]:
    fields = {k: v for k, (v, _) in combo.items() if k != "preset"}
    params = dict(task_params)
    if "preset" in combo:
        params["preset"] = combo["preset"][0]
    try:
        cfg = dataclasses.replace(base, **{**fields, **fixed}, method=spec, task=task, task_params=params)
        build_task(cfg)
    except AdcbenchError as exc:
        where = combo["preset"][1] if "preset" in combo else key
        raise f.fail(where, one_line(exc)) from None
    return [make_run(dataclasses.replace(cfg, seed=seed), f.where(*key)) for seed in seeds]
