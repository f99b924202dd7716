"""An example ``plugin`` L2 backend: objects in process memory, shared by "bucket" name so a
second adapter on the same bucket finds what the first stored (the restart case).

Spec: ``{"type": "plugin", "module_path": "l2_example_plugin", "class_name": "MemoryBackend",
"adapter_params": {"bucket": "b1"}}``. ``fail`` (a set of method names) makes those methods raise;
``fail_keys`` (a set of names) makes those keys fail with a per-key exception.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

BUCKETS: dict[str, dict[str, tuple[bytes, int | None]]] = {}
_LOCK = threading.Lock()


class MemoryBackend:
    def __init__(self, params: dict[str, Any]) -> None:
        unknown = set(params) - {"bucket"}
        if unknown:
            raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}")
        self.bucket = str(params.get("bucket", "default"))
        with _LOCK:
            self.objects = BUCKETS.setdefault(self.bucket, {})
        self.fail: set[str] = set()
        self.fail_keys: set[str] = set()
        self.closed = 0
        self.calls: list[str] = []

    def _check(self, method: str) -> None:
        self.calls.append(method)
        if method in self.fail:
            raise RuntimeError(f"injected failure in {method}")

    def put(
        self, names: list[str], buffers: list[memoryview], checksums: list[int]
    ) -> list[bool | Exception]:
        self._check("put")
        out: list[bool | Exception] = []
        with _LOCK:
            for n, b, c in zip(names, buffers, checksums, strict=True):
                if n in self.fail_keys:
                    out.append(OSError(f"injected failure for {n}"))
                    continue
                self.objects.setdefault(n, (bytes(b), c))
                out.append(True)
        return out

    def stat(self, names: list[str]) -> list[int | Exception | None]:
        self._check("stat")
        with _LOCK:
            return [len(self.objects[n][0]) if n in self.objects else None for n in names]

    def get(
        self, names: list[str], buffers: list[memoryview]
    ) -> list[tuple[int, int | None] | Exception | None]:
        self._check("get")
        out: list[tuple[int, int | None] | Exception | None] = []
        with _LOCK:
            for n, b in zip(names, buffers, strict=True):
                if n in self.fail_keys:
                    out.append(OSError(f"injected failure for {n}"))
                    continue
                obj = self.objects.get(n)
                if obj is None:
                    out.append(None)
                    continue
                data, checksum = obj
                if len(data) == len(b):
                    b[:] = data
                out.append((len(data), checksum))
        return out

    def delete(self, names: list[str]) -> list[bool | Exception]:
        self._check("delete")
        with _LOCK:
            return [self.objects.pop(n, None) is not None for n in names]

    def list_objects(self) -> Iterator[tuple[str, int]]:
        self._check("list_objects")
        with _LOCK:
            items = [(n, len(d)) for n, (d, _) in self.objects.items()]
        yield from items

    def close(self) -> None:
        self.closed += 1


class NotABackend:
    def __init__(self, params: dict[str, Any]) -> None:
        pass

    def put(self) -> None:
        pass


INSTANCES: list[MemoryBackend] = []


class TrackedBackend(MemoryBackend):
    """MemoryBackend that remembers its instances, so tests can flip failure knobs."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        INSTANCES.append(self)
