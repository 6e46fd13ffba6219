"""One registry per family of components (scorer kinds, label strategies, objectives, corpora).

A built-in registers itself where it is defined; an extension is one module that does the same,
made known through an entry point of the family's group (`mtdistill.<family>` in its package's
metadata), which the registry imports the first time it is read. So the workflow (config checks,
schema enums) and the step that runs the component see the same names.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, family: str):
        self.family = family
        self.group = f"mtdistill.{family}"
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register a component under `name` (a name taken twice is a programming error)."""
        def add(component: T) -> T:
            if name in self._entries and self._entries[name] is not component:
                raise ValueError(f"{self.family}: {name!r} is registered twice")
            self._entries[name] = component
            return component
        return add

    def add(self, name: str, component: T) -> T:
        return self.register(name)(component)

    def _load_plugins(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            for entry in entry_points(group=self.group):
                entry.load()  # importing the module registers its components

    def __getitem__(self, name: str) -> T:
        self._load_plugins()
        if name not in self._entries:
            raise KeyError(f"{self.family}: unknown {name!r} (one of {', '.join(self._entries)})")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def items(self):
        self._load_plugins()
        return list(self._entries.items())
