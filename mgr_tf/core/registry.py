"""`Registry`: the name -> entry table behind the task, backbone and feature-type registries."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """A dict of entries keyed by their `name`, whose lookups fail with one line naming the known names.

    Args:
        what: what a name selects, as the error says it (e.g. "task", "features").
        prefix: text before the error (e.g. "ModelConfig: ").
    """

    def __init__(self, what: str, prefix: str = ""):
        super().__init__()
        self.what, self.prefix = what, prefix

    def register(self, entry: T) -> T:
        """Adds `entry` under `entry.name` (replacing an entry of that name); returns it."""
        self[entry.name] = entry
        return entry

    def lookup(self, name: str) -> T:
        """The entry called `name`.

        Raises:
            ValueError: naming the registered names, if there is none.
        """
        try:
            return self[name]
        except KeyError:
            raise ValueError(f"{self.prefix}{self.what} must be one of {tuple(self)}, got {name!r}") from None
