"""Module paths of adcbench 0.1 (a flat package), kept importable for plugins written against it.

`import adcbench.method` returns the very module `adcbench.core.method`, not a copy, so classes,
registries and monkeypatches are shared. New code imports the layered paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

OLD_TO_NEW = {
    "adcbench.method": "adcbench.core.method",
    "adcbench.params": "adcbench.core.params",
    "adcbench.registry": "adcbench.core.registry",
    "adcbench.pipeline": "adcbench.core.pipeline",
    "adcbench.cache": "adcbench.core.cache",
    "adcbench.results": "adcbench.core.records",
    "adcbench.task": "adcbench.data.task",
    "adcbench.imagetask": "adcbench.data.imagetask",
    "adcbench.imagedata": "adcbench.data.images",
    "adcbench.hub": "adcbench.data.hub",
    "adcbench.sources": "adcbench.data.sources",
    "adcbench.models": "adcbench.model.vit",
    "adcbench.backbones": "adcbench.model.backbones",
    "adcbench.split": "adcbench.model.split",
    "adcbench.pretrain": "adcbench.train.pretrain",
    "adcbench.roles": "adcbench.train.roles",
    "adcbench.leaderboard": "adcbench.report.leaderboard",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__  # the import system overwrites it; put it back below
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # already executed under its own name


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = OLD_TO_NEW.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
