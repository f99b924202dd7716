"""Shared by the tests that run a server in-process: its configuration on free loopback ports."""

from __future__ import annotations

import argparse

from lmcache.config import ServerConfig, add_arguments, from_namespace


def local_config(*extra: str) -> ServerConfig:
    """A server on 127.0.0.1, ports picked by the OS, 64 MiB LRU L1, plus ``extra`` flags."""
    parser = argparse.ArgumentParser()
    add_arguments(parser, ServerConfig)
    argv = ["--host", "127.0.0.1", "--port", "0", "--http-host", "127.0.0.1", "--http-port", "0"]
    argv += ["--l1-size-gb", "0.0625", "--eviction-policy", "LRU", *extra]
    return from_namespace(ServerConfig, parser.parse_args(argv))
