"""Strings held once, as small integer codes: for columns of a row per flow (addresses, app names, analyzers)."""
from __future__ import annotations


class NameCodes:
    """`code(name)` gives each distinct string a number, in order of first use; `names[code]` gives it back."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code
