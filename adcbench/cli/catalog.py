"""What the registries hold, cached on disk, so that `adcbench methods`, `adcbench tasks` and the
checking of `--method`/`--task` answer without importing torch, timm or the data stack.

The catalog (names, descriptions, parameters with ranges, task defaults) is built from the live
registries once and stored in `$ADCBENCH_CACHE/catalog/<key>.json`. The key covers every source
file that can change it -- adcbench's own modules (methods/ and tasks/ included) by path, size
and mtime, the installed plugin entry points with their versions and files -- so editing a method
or installing a plugin rebuilds it. Names the catalog does not know (a plugin that failed to
describe itself) fall through to the live registry, which is slower but always right.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import adcbench
from adcbench.core.cache import cache_dir, config_hash, file_identity, write_json_atomic
from adcbench.core.params import (
    Param,
    missing_modules,
    parse_spec,
    resolve_params,
    split_generic_xi,
    unavailable_text,
)
from adcbench.errors import DatasetNotFoundError, ParamError, UnknownNameError

GROUPS = {"method": "adcbench.methods", "task": "adcbench.tasks"}
_TYPES = {t.__name__: t for t in (bool, int, float, str)}
_TASK_FIELDS = ("num_classes", "image_size", "arch", "split_index", "batch_size", "lr", "epochs", "source", "data_env")
_memo: dict[str, Any] | None = None


def _key() -> str:
    files = sorted(Path(adcbench.__file__).parent.rglob("*.py"))
    for pkg in GROUPS.values():  # methods/ and tasks/ live outside adcbench/ in a source checkout
        spec = importlib.util.find_spec(pkg)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            files += sorted(Path(loc).glob("*.py"))
    eps = []
    for group in GROUPS.values():
        for ep in importlib.metadata.entry_points(group=group):
            dist = ep.dist
            origin = getattr(importlib.util.find_spec(ep.module.split(".")[0]), "origin", None)
            eps.append(
                [group, ep.name, ep.value, dist.version if dist else None, origin and file_identity(Path(origin))]
            )
    timm = importlib.metadata.version("timm")  # its model list is in the catalog
    return config_hash(
        {"py": sys.version, "files": [file_identity(f) for f in files], "entry_points": eps, "timm": timm}
    )


def _param(p: Param) -> dict[str, Any]:
    d = dataclasses.asdict(p)
    if p.type.__name__ not in _TYPES:
        raise TypeError(p.type)
    d["type"] = p.type.__name__
    return d


def _describe(cls: Any, kind: str) -> dict[str, Any]:
    entry = {"description": cls.description, "params": [_param(p) for p in cls.params]}
    if kind == "method":
        entry["rate_param"] = getattr(cls, "rate_param", None)
        entry["eval_compressed"] = getattr(cls, "eval_compressed", None)
        entry["deployment_policy"] = getattr(cls, "deployment_policy", None)
        entry["same_as"] = getattr(cls, "same_as", None)
        entry["lossless"] = bool(getattr(cls, "lossless", False))
        # Whether the stage has a paper cost model (--budget-accounting nominal): it overrides
        # Method.nominal_ratio, which every override answers with a number (a class without one
        # keeps, or restores, the base's function; tests/test_startup.py holds this registry-wide).
        from adcbench.core.method import Method

        entry["nominal"] = entry["lossless"] or getattr(cls, "nominal_ratio", None) is not Method.nominal_ratio
        entry["requires"] = list(getattr(cls, "requires", ()))  # checked live: installing one needs no rebuild
        entry["install"] = getattr(cls, "install", "")
    else:
        entry.update({f: getattr(cls, f, None) for f in _TASK_FIELDS})
        # Blocks of the backbone, where the class alone fixes it (an explicit ViT and no task
        # parameters that could change the model): lets a bad --split fail before torch loads.
        kwargs = getattr(cls, "arch_kwargs", {}) or {}
        entry["depth"] = kwargs.get("depth") if cls.arch == "vit" and not cls.params else None
        entry["data"] = cls.data_lookup() if hasattr(cls, "data_lookup") else None
    return entry


def build() -> dict[str, dict[str, Any]]:
    """The catalog from the live registries (imports every method and task)."""
    from adcbench.core.method import METHODS
    from adcbench.data.task import TASKS

    out: dict[str, dict[str, Any]] = {}
    for kind, reg in (("method", METHODS), ("task", TASKS)):
        out[kind] = {}
        for name in reg.names():
            try:
                out[kind][name] = _describe(reg.get(name), kind)
            except TypeError:  # a parameter type JSON cannot name: that entry stays live-only
                continue
    import timm

    out["timm"] = {"models": sorted(timm.list_models())}  # for --arch, without importing timm
    return json.loads(json.dumps(out))  # the same types whether built or read back


def catalog() -> dict[str, dict[str, Any]]:
    global _memo
    if _memo is None:
        path = cache_dir("catalog") / f"{_key()}.json"
        try:
            _memo = json.loads(path.read_text())
        except (OSError, ValueError):
            _memo = build()
            try:
                write_json_atomic(path, _memo)
            except OSError:  # a read-only cache only costs the next call the rebuild
                pass
    return _memo


def params(entry: dict[str, Any]) -> tuple[Param, ...]:
    return tuple(
        Param(**{**p, "type": _TYPES[p["type"]], "choices": None if p["choices"] is None else tuple(p["choices"])})
        for p in entry["params"]
    )


def live(kind: str) -> Any:
    """The registry itself when this process has already imported and discovered it (then it
    costs nothing and also knows methods registered at run time); else None."""
    module = sys.modules.get("adcbench.core.method" if kind == "method" else "adcbench.data.task")
    reg = getattr(module, "METHODS" if kind == "method" else "TASKS", None)
    return reg if reg is not None and reg._discovered else None


def names(kind: str) -> list[str]:
    """Every name of `kind`: the live registry's if loaded, else the catalog's and any plugin
    entry point's."""
    if (reg := live(kind)) is not None:
        return reg.names()
    eps = [ep.name for ep in importlib.metadata.entry_points(group=GROUPS[kind])]
    return sorted(set(catalog()[kind]) | set(eps))


def entries(kind: str, wanted: list[str]) -> dict[str, dict[str, Any]]:
    """name -> description, from the catalog where it knows the name, else from the registry."""
    reg = live(kind)
    known = {} if reg is not None else catalog()[kind]
    missing = [n for n in wanted if n not in known]
    if missing and reg is None:
        from adcbench.core.method import METHODS
        from adcbench.data.task import TASKS

        reg = METHODS if kind == "method" else TASKS
    return {n: known[n] if n in known else json.loads(json.dumps(_describe(reg.get(n), kind))) for n in wanted}


def _check_params(kind: str, name: str, entry: dict[str, Any], given: dict[str, Any]) -> None:
    """As the registry checks them; a generic `xi=` as core.pipeline.build_stage does (its mapping
    to the native knob needs the cut, so it is left to the run)."""
    ps = params(entry)
    if kind == "method" and (missing := missing_modules(entry.get("requires") or [])):
        raise ParamError(unavailable_text(name, missing, entry.get("install", "")))
    if kind == "method":
        given, _ = split_generic_xi(name, given, ps, entry.get("rate_param"), bool(entry.get("lossless")))
    resolve_params(ps, given, f"{kind} {name}")


def _fixed_task(task_spec: str) -> dict[str, Any]:
    """The task's catalog entry when the spec has no parameters (then the class alone fixes its
    backbone); else, or for a name the catalog lacks, {}."""
    (name, given), *_ = parse_spec(task_spec)
    return entries("task", [name])[name] if not given and name in names("task") else {}


def task_arch(task_spec: str) -> str | None:
    """The task's backbone name, where the class alone fixes it (no task parameters); else None."""
    return _fixed_task(task_spec).get("arch")


def timm_models() -> list[str]:
    return catalog()["timm"]["models"]


def check_split(task_spec: str, split: int | None, arch: str | None) -> None:
    """`--split` against the backbone's depth where the catalog knows it (model/split.py checks
    every other case, on a weightless skeleton, with the same message)."""
    depth = _fixed_task(task_spec).get("depth") if arch is None else None
    if split is not None and depth is not None and not 1 <= split < depth:
        raise ParamError(f"split={split} is out of range; valid: 1..{depth - 1} for a {depth}-block ViT")


def check_data(task_spec: str, data: str | None) -> None:
    """Fail at once where the task would find no data: no `--data`, no environment variable, no
    default path, and a hub that is unreachable (data/imagetask.py's order and message). An
    offline hub (HF_HUB_OFFLINE) may still have it cached, so that case is left to the run."""
    (name, _), *_ = parse_spec(task_spec)
    lookup = entries("task", [name])[name].get("data") if name in names("task") else None
    if data or not lookup or (lookup["env"] and os.environ.get(lookup["env"])):
        return
    if any(Path(p).exists() for p in lookup["defaults"]):
        return
    if lookup["hub"]:
        from adcbench.data.hub import hub_offline, hub_reachable

        if hub_offline() or hub_reachable():
            return
    raise DatasetNotFoundError(lookup["missing"])


def check_nominal(spec: str, accounting: str | None) -> None:
    """`--budget-accounting nominal` needs every stage's nominal ratio (train/parties.py checks
    the built chain with the same message; names the catalog lacks are left to it)."""
    if accounting != "nominal":
        return
    stages = [n for n, _ in parse_spec(spec) if n in names("method")]
    if any(not e.get("nominal", True) for e in entries("method", stages).values()):
        raise ParamError(f"{spec} has no nominal ratio in the paper; use --budget-accounting measured")


def check(kind: str, spec: str) -> None:
    """Reject an unknown name or a bad parameter in a method or task spec, as the registry would,
    before anything heavy is imported. Names only a plugin knows are left to the registry."""
    stages = parse_spec(spec)
    if kind == "task" and len(stages) > 1:
        raise ParamError(f"a task spec has one part, got {spec!r}")
    known = entries(kind, [n for n, _ in stages if n in names(kind)])
    for name, given in stages:
        if name in known:
            _check_params(kind, name, known[name], given)
        elif name not in names(kind):
            everything = names(kind)
            close = difflib.get_close_matches(name, everything, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(f"unknown {kind} {name!r}{hint} (known: {', '.join(everything)})")
