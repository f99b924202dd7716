"""StorageEngine: configuration in, running native engine out."""

from __future__ import annotations

import argparse
import os
import time

import pytest

from lmcache import config as cfg
from lmcache._native import keys
from lmcache.storage import StorageEngine


def _config(*argv: str) -> cfg.StorageConfig:
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser, cfg.StorageConfig)
    return cfg.from_namespace(cfg.StorageConfig, parser.parse_args(list(argv)))


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_engine_from_config_stores_and_serves() -> None:
    conf = _config("--l1-size-gb", "0.25", "--eviction-policy", "LRU", "--periodic-notifier-interval-ms", "2")
    with StorageEngine(conf) as engine:
        assert engine.healthy
        k = keys.make_keys([bytes([i]) * 32 for i in range(8)], "m", 0)
        data = os.urandom(8 * 64 * 1024)
        assert engine.l1.put(k, data) == 8
        out = bytearray(len(data))
        assert engine.l1.get_prefix(k, out) == 8
        assert bytes(out) == data
        status = engine.status()
        assert status["l1"]["capacity_bytes"] == 256 << 20
        assert status["eviction"]["eviction_policy"] == "LRU"
        assert status["notifier"]["interval_ms"] == 2
    assert not engine.healthy


def test_lazy_l1_keeps_an_idle_engine_small() -> None:
    before = _rss_bytes()
    conf = _config("--l1-size-gb", "2", "--eviction-policy", "LRU")
    with StorageEngine(conf) as engine:
        time.sleep(0.3)  # let the prefault thread do whatever it does when idle
        grown = _rss_bytes() - before
        assert engine.l1.stats()["usable_bytes"] == 2 << 30
    # An idle lazy L1 of 2 GB costs well under 0.2 GB (LMCache 0.5.6 touches all of it).
    assert grown < 200 << 20, grown


def test_eager_l1_is_committed_at_start() -> None:
    conf = _config("--l1-size-gb", "0.125", "--no-l1-use-lazy", "--eviction-policy", "noop")
    engine = StorageEngine(conf)
    st = engine.l1.stats()
    assert st["prefaulted_bytes"] == st["capacity_bytes"] == 128 << 20
    assert engine.l1.eviction_policy == "noop"


def test_isolated_lru_engine_has_quotas() -> None:
    conf = _config("--l1-size-gb", "0.0625", "--eviction-policy", "IsolatedLRU")
    engine = StorageEngine(conf)
    assert engine.l1.supports_quotas
    engine.l1.set_quota("tenant-a", 1 << 20)
    assert engine.l1.quotas() == {"tenant-a": 1 << 20}


@pytest.mark.parametrize("policy", ["LRU", "IsolatedLRU", "noop"])
def test_every_policy_name_of_the_config_is_accepted_natively(policy: str) -> None:
    assert policy in cfg.EVICTION_POLICIES
    StorageEngine(_config("--l1-size-gb", "0.01", "--eviction-policy", policy))
