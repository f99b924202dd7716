"""The periodic eventfd notifier through the bindings."""

from __future__ import annotations

import os
import select
import time

import pytest

from lmcache import errors
from lmcache._native import memory, notify


def test_notifier_writes_eventfds() -> None:
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        with notify.PeriodicNotifier(interval_ms=2) as n:
            n.register(fd)
            r, _, _ = select.select([fd], [], [], 2.0)
            assert r == [fd]
            assert os.eventfd_read(fd) >= 1
            with pytest.raises(errors.AlreadyExistsError):
                n.register(fd)
            n.unregister(fd)
            with pytest.raises(errors.NotFoundError):
                n.unregister(fd)
            st = n.stats()
            assert st["running"] and st["ticks"] >= 1 and st["interval_ms"] == 2
        assert not n.stats()["running"]
        time.sleep(0.01)
        with pytest.raises(BlockingIOError):
            os.eventfd_read(fd)
    finally:
        os.close(fd)


def test_notifier_rejects_bad_values() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        notify.PeriodicNotifier(interval_ms=0)
    n = notify.PeriodicNotifier()
    with pytest.raises(errors.InvalidArgumentError):
        n.register(-1)


def test_allocator_binding() -> None:
    a = memory.Allocator(1 << 20, 4096)
    x = a.allocate(5000)
    assert x is not None and x.size == 8192 and x.offset % 4096 == 0
    assert a.allocate(2 << 20) is None
    a.free(x)
    assert a.stats()["used_bytes"] == 0
    with pytest.raises(errors.InvalidArgumentError):
        memory.Allocator(1000, 3)
