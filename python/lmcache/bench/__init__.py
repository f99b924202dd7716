"""Benchmarks of a running lmcache server, used by ``lmcache bench``.

* :mod:`lmcache.bench.server_bench`: ``lmcache bench server`` (alias ``bench kvcache``), an
  end-to-end data-path check and latency benchmark over the multiprocess protocol, playing a CPU
  inference worker (lmcache_driven or engine_driven transfers).
* :mod:`lmcache.bench.kv_shape`: the ``--kvcache-shape-spec`` grammar.
* :mod:`lmcache.bench.kv_cache`: the fake worker's paged KV memory (POSIX SHM), deterministic
  data and 0.5.6-compatible per-chunk checksums.
"""
