"""Name -> implementation lookup, so adding a backbone or a descriptor set is one file and one line."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from at2seld_edge.errors import EdgeError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise EdgeError(self._unknown(name)) from None

    def require(self, name: str) -> str:
        """For schema validators: the name if registered, else ValueError listing the known ones."""
        if name not in self._items:
            raise ValueError(self._unknown(name))
        return name

    def _unknown(self, name: str) -> str:
        return f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
