"""Typed, validated parameters for methods and tasks, and the `name:key=value,...` spec syntax."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from adcbench.errors import ParamError


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter: its type, default and valid range (closed unless `*_open`)."""

    name: str
    type: type
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    optional: bool = False  # None is allowed (means "not set")

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        if self.low is None and self.high is None:
            return f"any {self.type.__name__}"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{self.type.__name__} in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"

    def parse(self, raw: Any, owner: str = "") -> Any:
        where = f"{owner}: " if owner else ""
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null") and self.optional):
            if self.optional:
                return None
            raise ParamError(f"{where}parameter {self.name!r} needs a value ({self.range_text()})")
        try:
            value = _coerce(self.type, raw)
        except (TypeError, ValueError):
            raise ParamError(f"{where}parameter {self.name!r} got {raw!r}; expected {self.range_text()}") from None
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"{where}parameter {self.name!r}={value!r}; valid: {self.range_text()}")
        if self.type in (int, float):
            bad = isinstance(value, float) and not math.isfinite(value)
            if self.low is not None:
                bad |= value < self.low or (self.low_open and value == self.low)
            if self.high is not None:
                bad |= value > self.high or (self.high_open and value == self.high)
            if bad:
                raise ParamError(
                    f"{where}parameter {self.name!r}={value!r} is out of range; valid: {self.range_text()}"
                )
        return value


def _coerce(typ: type, raw: Any) -> Any:
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        s = str(raw).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if typ is int:
        if isinstance(raw, bool):
            raise TypeError(raw)
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        return int(str(raw).strip())
    if typ is float:
        if isinstance(raw, bool):
            raise TypeError(raw)
        return float(raw)
    if typ is str:
        return str(raw)
    return typ(raw)


def resolve_params(declared: Sequence[Param], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Validate `given` against `declared`; fill defaults. Unknown keys are an error."""
    by_name = {p.name: p for p in declared}
    unknown = [k for k in given if k not in by_name]
    if unknown:
        valid = ", ".join(by_name) or "none"
        raise ParamError(f"{owner}: unknown parameter {unknown[0]!r} (valid parameters: {valid})")
    return {p.name: p.parse(given[p.name], owner) if p.name in given else p.default for p in declared}


def parse_spec(spec: str) -> list[tuple[str, dict[str, str]]]:
    """`adc:xi=0.1,rule=B+quant:bits=8` -> [("adc", {"xi": "0.1", "rule": "B"}), ("quant", {...})].

    Stages are separated by '+' (a '+' inside a number such as 1e+3 is not a separator)."""
    spec = spec.strip()
    if not spec:
        raise ParamError("empty method spec")
    parts: list[str] = []
    cur = ""
    for i, ch in enumerate(spec):
        if ch == "+" and not (i > 0 and spec[i - 1] in "eE" and cur[-2:-1].isdigit()):
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for part in parts:
        part = part.strip()
        if not part:
            raise ParamError(f"malformed spec {spec!r}: empty stage between '+'")
        name, _, rest = part.partition(":")
        kv: dict[str, str] = {}
        if rest.strip():
            for item in rest.split(","):
                key, eq, value = item.partition("=")
                if not eq or not key.strip():
                    raise ParamError(f"malformed spec {part!r}: expected key=value, got {item!r}")
                kv[key.strip()] = value.strip()
        out.append((name.strip(), kv))
    return out


def format_spec(name: str, params: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> str:
    """Inverse of parse_spec for one stage; with `defaults`, only non-default values appear."""
    items = [f"{k}={_fmt(v)}" for k, v in params.items() if defaults is None or defaults.get(k) != v]
    return name + (":" + ",".join(items) if items else "")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# The generic rate knob of every lossy method: the target wire ratio against `none` (core/rate.py).
XI_PARAM = Param("xi", float, None, "target wire ratio against none", low=0.0, high=1.0, low_open=True)


def expand_braces(spec: str) -> list[str]:
    """Brace expansion of a spec: `adc:xi={0.01,0.1}` -> ['adc:xi=0.01', 'adc:xi=0.1']."""
    if spec.count("{") != spec.count("}"):
        raise ParamError(f"unbalanced braces in {spec!r}")
    parts = re.split(r"(\{[^{}]*\})", spec)
    choices = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(c).strip() for c in itertools.product(*choices)]


def split_generic_xi(
    name: str, params: Mapping[str, Any], own: Sequence[Param], rate_param: tuple[str, Any] | None, lossless: bool
) -> tuple[dict[str, Any], float | None]:
    """A method's parameters without a generic `xi=` (one it has no native `xi` parameter for),
    and the checked xi target (None when there is none). The rules of the generic rate knob:
    only a lossy method with a rate knob takes it, and never together with that native knob."""
    if "xi" not in params or any(p.name == "xi" for p in own):
        return dict(params), None
    if rate_param is None or lossless:
        raise ParamError(f"method {name}: has no rate knob, so xi= does not apply (it is lossless or identity)")
    if rate_param[0] in params:
        raise ParamError(f"method {name}: give either xi= or its native {rate_param[0]}=, not both")
    rest = {k: v for k, v in params.items() if k != "xi"}
    return rest, XI_PARAM.parse(params["xi"], f"method {name}")


def check_final_eval(final_samples: int | None, history_samples: int | None, final_eval: str) -> None:
    """`final_eval_samples`: a superset of the history's subset, for a full final evaluation.
    Torch-free, so the CLI rejects it before the training stack loads (train/config.py too)."""
    if final_samples is None:
        return
    low = history_samples or 1
    if final_samples < low:
        raise ParamError(f"final_eval_samples={final_samples} is out of range; valid: integer >= {low}")
    if final_eval != "full":
        raise ParamError("final_eval_samples sizes the final evaluation: leave final_eval at full")


def missing_modules(names: Sequence[str]) -> list[str]:
    """The optional modules among `names` that are not installed (found without importing them)."""
    return [m for m in names if importlib.util.find_spec(m) is None]


def unavailable_text(name: str, missing: Sequence[str], install: str) -> str:
    """The one line a method with missing optional modules is refused with."""
    how = install or f"pip install {missing[0]}"
    return f"method {name} is unavailable: it needs {', '.join(missing)} (install with: {how})"
