"""The protocol of a Python L2 backend, and what a type's factory returns.

A backend is a plain synchronous object store addressed by name. The C++ bridge
(``cpp/bindings/l2_python.cc`` over ``CreateL2AdapterOverBackend``) turns it into a full L2
adapter: task ids and eventfds, worker threads (``BackendHandle.num_workers``) that take the GIL
only around a backend call, results handed out once, first writer wins, lookup locks (refcount
and 300 s TTL, kept in C++), usage per ``cache_salt``, listing, capacity eviction, and
integrity: the bridge computes an XXH64 of every object, hands it to :meth:`L2Backend.put`, and
verifies the bytes :meth:`L2Backend.get` delivered against the checksum stored with the object
(a mismatch is a miss, counted in ``corrupt_objects``, and the object is deleted).

Names are the LMCache fs file stem of a key (``model@0x<rank:08x>@<group:x>@<hash hex>[@salt]``,
``/`` in the model written ``-SEP-``); :meth:`L2Backend.list_objects` returns them back, and names
that do not parse are ignored.

Rules for every method:

* batch-wise: one result per name, in order;
* an exception raised by the method fails every key of the call; an exception *instance* in the
  result list fails that key only. Both count ``io_errors`` and log one warning line (logger
  ``lmcache.l2``); neither reaches the caller;
* buffers are ``memoryview`` objects over native memory, valid only during the call: do not keep
  them (or slices of them) afterwards;
* with ``num_workers > 1``, methods are called from several threads at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lmcache.errors import InvalidArgumentError

__all__ = ["BackendHandle", "Fields", "L2Backend"]


@runtime_checkable
class L2Backend(Protocol):
    """A synchronous, batch-wise object store (see the module docstring for the rules)."""

    def put(
        self, names: list[str], buffers: list[memoryview], checksums: list[int]
    ) -> list[bool | Exception]:
        """Store ``buffers[i]`` and ``checksums[i]`` (an unsigned 64-bit int) under ``names[i]``.

        A name that already exists keeps its object (first writer wins) and is reported True.
        """
        ...

    def stat(self, names: list[str]) -> list[int | Exception | None]:
        """The size in bytes of each stored object, None when absent."""
        ...

    def get(
        self, names: list[str], buffers: list[memoryview]
    ) -> list[tuple[int, int | None] | Exception | None]:
        """Read each object into its writable buffer.

        Returns ``(size, checksum)`` per name, None when absent. Write the bytes only when the
        object has exactly ``len(buffers[i])`` bytes (otherwise just report its size).
        ``checksum`` is the one :meth:`put` was given, or None for an object stored without one
        (written by another program: served unverified).
        """
        ...

    def delete(self, names: list[str]) -> list[bool | Exception]:
        """Remove objects; True for each name that existed."""
        ...

    def list_objects(self) -> Iterable[tuple[str, int]]:
        """Every stored object as ``(name, size)``; called once when the adapter is created."""
        ...

    def close(self) -> None:
        """Release resources; called once, after the last call of any other method."""
        ...


@dataclass
class BackendHandle:
    """What a type's factory returns: the backend and how the bridge should drive it."""

    backend: L2Backend
    num_workers: int = 1  # bridge threads calling the backend concurrently
    capacity_bytes: int = 0  # 0: unbounded; otherwise the bridge evicts (and deletes) LRU objects
    probe_misses: bool = True  # lookup misses ask the backend (stat): objects other writers stored
    details: dict[str, str] = field(default_factory=dict)  # facts for the adapter's status


class Fields:
    """Reads one adapter spec (a JSON object as a dict) with one-line errors naming the field.

    Every getter raises :class:`~lmcache.errors.InvalidArgumentError` on a wrong type or range;
    :meth:`finish` refuses fields nobody read. ``None`` counts as absent (as in the C++ reader).
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise InvalidArgumentError(f"spec must be a JSON object, got {type(spec).__name__}")
        self._spec = spec
        self._used: set[str] = set()

    @staticmethod
    def _brief(v: Any) -> str:
        import json

        try:
            s = json.dumps(v)
        except (TypeError, ValueError):
            s = repr(v)
        return s if len(s) <= 40 else s[:37] + "..."

    def fail(self, name: str, what: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"field '{name}' {what}")

    def _get(self, name: str) -> Any:
        self._used.add(name)
        return self._spec.get(name)

    def has(self, name: str) -> bool:
        return self._spec.get(name) is not None

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        v = self._get(name)
        if v is None:
            if required:
                raise self.fail(name, "is required (a non-empty string)")
            return default
        if not isinstance(v, str) or (required and not v):
            raise self.fail(name, f"must be a {'non-empty ' if required else ''}string, got {self._brief(v)}")
        return v

    def required_string(self, name: str) -> str:
        v = self.string(name, required=True)
        assert v is not None
        return v

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self._get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(name, f"must be an integer in [{lo}, {hi}], got {self._brief(v)}")
        return v

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        v = self._get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise self.fail(name, f"must be a number in [{lo:g}, {hi:g}], got {self._brief(v)}")
        return float(v)

    def boolean(self, name: str, default: bool) -> bool:
        v = self._get(name)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.fail(name, f"must be true or false, got {self._brief(v)}")
        return v

    def choice(self, name: str, default: str, choices: list[str]) -> str:
        v = self._get(name)
        if v is None:
            return default
        if v not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, got {self._brief(v)}")
        return str(v)

    def obj(self, name: str) -> dict[str, Any] | None:
        v = self._get(name)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise self.fail(name, f"must be an object, got {self._brief(v)}")
        return v

    def skip(self, name: str) -> None:
        self._used.add(name)

    def finish(self) -> None:
        for k in self._spec:
            if k not in self._used:
                known = ", ".join(sorted(self._used | {"type", "eviction", "shared", "persist_enabled"}))
                raise InvalidArgumentError(f"unknown field '{k}' (known fields: {known})")
