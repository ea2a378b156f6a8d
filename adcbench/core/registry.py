"""Name -> object registries with decorators, wildcard listing and plugin discovery.

Built-in entries are the modules of a package (`adcbench.methods`, `adcbench.tasks`), imported on
first use; third-party entries come from an entry-point group (`adcbench.methods`,
`adcbench.tasks`) whose targets are imported and expected to register themselves (or to be the
registrable object itself)."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import pkgutil
import warnings
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from adcbench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str, entry_point_group: str) -> None:
        self.kind = kind
        self.package = package
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@register_method("adc")`."""

        def decorator(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj:
                # Re-importing a module re-creates its classes; a *different* module taking a
                # name is a real clash.
                if getattr(existing, "__qualname__", None) != getattr(obj, "__qualname__", None):
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            try:
                setattr(obj, "registry_name", name)  # noqa: B010 - T is any registrable class
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the benchmark down
                warnings.warn(f"{self.kind} plugin {ep.name!r} failed to load: {exc}", stacklevel=2)
                continue
            if ep.name not in self._entries and not isinstance(obj, type(importlib)):
                self.register(ep.name)(obj)

    def get(self, name: str) -> T:
        self.discover()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            listing = f" (known: {', '.join(sorted(self._entries))})"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}{listing}") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted (like timm's list_models)."""
        self.discover()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
