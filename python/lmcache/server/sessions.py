"""Sessions: one per ``request_id`` (compat reference §5).

A session caches the token list of its request and the prefix-chain hashes computed so far,
so ``store``/``retrieve`` calls over successive token ranges hash only the new chunks, and it
remembers what its ``lookup`` read-locked (per kv rank and object group) so that
``retrieve`` consumes exactly those locks and ``free_lookup_locks``/``end_session`` release
the rest. Idle sessions expire after ``--session-ttl-seconds``; their locks are released.

Thread safety: :class:`SessionTable` is thread-safe; a :class:`Session` has its own lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmcache.protocol.hashing import TokenHasher

LockKey = tuple[int, int]  # (kv_rank, object_group_id)


@dataclass
class LookupLocks:
    """Read locks a lookup took: ``chunks`` leading chunks, ``readers`` locks each."""

    chunks: int
    readers: int
    consumed: dict[int, int] = field(default_factory=dict)  # chunk index -> locks consumed


class Session:
    def __init__(self, request_id: str, hasher: TokenHasher) -> None:
        self.request_id = request_id
        self._hasher = hasher
        self.lock = threading.Lock()
        self._tokens: tuple[int, ...] = ()
        self._hashes: list[bytes] = []
        self.last_used = time.monotonic()
        # Lookup state: the prefix length in chunks once known (None while running).
        self.lookup_result: int | None = None
        self.lookup_done = threading.Event()
        self.lookup_locks: dict[LockKey, LookupLocks] = {}
        self.model_name = ""
        self.cache_salt = ""
        self.world_size = 1
        self.lookup_hashes: list[bytes] = []
        # An L2 prefetch this session's lookup is waiting for (ServerCore's PendingPrefetch).
        self.prefetch: Any = None

    def hashes(self, token_ids: Sequence[int], num_chunks: int) -> list[bytes]:
        """Hashes of the first ``num_chunks`` full chunks of ``token_ids`` (cached per session).

        If the token list differs from the cached one, the cache is rebuilt from the first
        differing chunk. REQUIRES: caller holds ``self.lock``.
        """
        self.last_used = time.monotonic()
        tokens = tuple(token_ids)
        c = self._hasher.chunk_size
        if tokens[: len(self._tokens)] != self._tokens[: len(tokens)]:
            # Diverged: keep the hashes of the chunks that still match.
            same = 0
            limit = min(len(tokens), len(self._tokens)) // c
            while (
                same < limit and tokens[same * c : (same + 1) * c] == self._tokens[same * c : (same + 1) * c]
            ):
                same += 1
            del self._hashes[same:]
            self._tokens = tokens
        elif len(tokens) > len(self._tokens):
            self._tokens = tokens
        have = len(self._hashes)
        if num_chunks > have:
            prefix = self._hashes[-1] if have else None
            self._hashes.extend(
                self._hasher.hashes(tokens[: num_chunks * c], start_chunk=have, prefix=prefix)
            )
        return self._hashes[:num_chunks]


class SessionTable:
    """``request_id`` -> :class:`Session`, with TTL expiry."""

    def __init__(
        self, hasher: TokenHasher, ttl_seconds: float, on_expire: Callable[[Session], None] | None = None
    ) -> None:
        self._hasher = hasher
        self._ttl = ttl_seconds
        self._on_expire = on_expire
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def get(self, request_id: str) -> Session:
        with self._lock:
            s = self._sessions.get(request_id)
            if s is None:
                s = Session(request_id, self._hasher)
                self._sessions[request_id] = s
            s.last_used = time.monotonic()
            return s

    def find(self, request_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(request_id)

    def pop(self, request_id: str) -> Session | None:
        with self._lock:
            return self._sessions.pop(request_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def expire(self, now: float | None = None) -> int:
        """Drop sessions idle for longer than the TTL; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            dead = [s for s in self._sessions.values() if now - s.last_used > self._ttl]
            for s in dead:
                del self._sessions[s.request_id]
        for s in dead:
            if self._on_expire is not None:
                self._on_expire(s)
        return len(dead)

    def all(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())
