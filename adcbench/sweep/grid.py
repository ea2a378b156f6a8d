"""The grid: runs (a resolved configuration and a seed), seeds, brace expansion, option values.

Everything here is checked before anything runs: a grid whose runs are built is a valid grid.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from typing import Any

from adcbench.core.params import expand_braces
from adcbench.data.task import Task
from adcbench.errors import AdcbenchError, ParamError
from adcbench.train.config import RunConfig, resolve
from adcbench.train.identity import plan_run_id

# RunConfig fields a sweep never takes as an option: the grid's own axes, and the sweep's plumbing.
NOT_OPTIONS = frozenset(
    {"method", "task", "task_params", "seed", "progress", "checkpoint_dir", "checkpoint_every", "keep_checkpoints"}
)
SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
CHOICES = {"device": ("cpu", "cuda")}


class SweepError(AdcbenchError):
    """A malformed grid: the message names where (file:line) and what would be valid."""


@dataclasses.dataclass
class Run:
    cfg: RunConfig
    run_id: str  # config hash + seed
    config_hash: str
    spec: str  # canonical method spec
    where: str  # the sweep file line (or "command line") the run comes from

    @property
    def label(self) -> str:
        return f"{self.cfg.task} {self.spec} seed={self.cfg.seed}"


def expand(spec: str) -> list[str]:
    """Brace expansion: `adc:xi={0.01,0.1}` -> ['adc:xi=0.01', 'adc:xi=0.1']."""
    try:
        return expand_braces(spec)
    except ParamError as exc:
        raise SweepError(str(exc)) from None


def parse_seeds(text: Any) -> list[int]:
    """`0`, `0,1,2`, `0-4`, `0-2,7`, or a list of those; every seed once, ranges ascending."""
    items = text if isinstance(text, list) else [text]
    seeds: list[int] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
            if m and int(m.group(1)) <= int(m.group(2)):
                seeds += range(int(m.group(1)), int(m.group(2)) + 1)
            elif part.isdigit() and not isinstance(item, bool):
                seeds.append(int(part))
            else:
                raise SweepError(f"seeds: {part!r} is not a seed or an ascending range (e.g. 0, 0,1,2 or 0-4)")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds: {text!r} names a seed twice")
    return seeds


def parse_bytes(value: Any) -> int:
    """2e9, 500MB, 1.5GiB, or an integer."""
    if isinstance(value, bool):
        raise SweepError(f"{value!r} is not a byte count (e.g. 2e9, 500MB, 1.5GiB)")
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]i?)?b?\s*", str(value).lower())
    if not m or float(m.group(1)) * SI[m.group(2) or ""] < 1:
        raise SweepError(f"{value!r} is not a byte count of at least 1 (e.g. 2e9, 500MB, 1.5GiB)")
    return int(float(m.group(1)) * SI[m.group(2) or ""])


def option_names() -> list[str]:
    """What a sweep file may set, spelled as on the command line (`max-steps`)."""
    names = [f.name.replace("_", "-") for f in dataclasses.fields(RunConfig) if f.name not in NOT_OPTIONS]
    return sorted([*names, "preset"])


def closest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    return f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(valid)}"


def option_value(name: str, value: Any) -> tuple[str, Any]:
    """A sweep option as a RunConfig field and a checked value; SweepError where malformed."""
    field = name.replace("-", "_")
    if name == "preset":
        return "preset", str(value)
    if name not in option_names() and field.replace("_", "-") not in option_names():
        raise SweepError(f"unknown option {name!r}; {closest(name.replace('_', '-'), option_names())}")
    if field == "budget_bytes":
        return field, None if value is None else parse_bytes(value)
    hint = typing.get_type_hints(RunConfig)[field]
    allowed = typing.get_args(hint) or (hint,)
    ok = value is None and type(None) in allowed
    ok |= isinstance(value, bool) and bool in allowed
    ok |= not isinstance(value, bool) and isinstance(value, int) and (int in allowed or float in allowed)
    ok |= isinstance(value, float) and float in allowed
    ok |= isinstance(value, str) and str in allowed
    if not ok:
        names = " or ".join(getattr(a, "__name__", str(a)).replace("NoneType", "null") for a in allowed)
        raise SweepError(f"{name}: {value!r} is not {names}")
    if field in CHOICES and value not in CHOICES[field]:
        raise SweepError(f"{name}: {value!r}; valid: {', '.join(CHOICES[field])}")
    if float in allowed and isinstance(value, int):
        value = float(value)
    return field, value


def check_ranges(fields: dict[str, Any]) -> None:
    """Ranges and choices that do not depend on the task: `resolve` against the Task base class,
    whose class attributes are the generic defaults (the run's own task checks the rest later)."""
    resolve(dataclasses.replace(RunConfig(), **fields), Task)  # type: ignore[arg-type]


def make_run(cfg: RunConfig, where: str) -> Run:
    """Resolve `cfg` (no data loads): its identity, hash and run id; errors name `where`."""
    try:
        rid, ident = plan_run_id(cfg)
    except AdcbenchError as exc:
        raise SweepError(f"{where}: {one_line(exc)}") from None
    return Run(cfg, rid, rid.rsplit("-s", 1)[0], ident["method"], where)


def one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


def dedupe(runs: list[Run]) -> list[Run]:
    """One run per run id (`adc` and `adc:xi=<default>` are the same run), in grid order."""
    seen: dict[str, Run] = {}
    for r in runs:
        seen.setdefault(r.run_id, r)
    return list(seen.values())
