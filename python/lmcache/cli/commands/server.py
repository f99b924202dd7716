"""``lmcache server``: run the KV-cache server (ZMQ RPC + HTTP admin API) in the foreground.

Every flag is validated before anything is allocated (one line naming the flag on error, exit
2). Flags of features this build does not have yet are accepted and listed once at start-up.
SIGINT/SIGTERM stop it gracefully: no new requests, in-flight ones finish, every worker's
shared memory is unmapped, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from lmcache.cli.status import ExitStatus
from lmcache.config import ServerConfig, add_arguments, from_namespace, inactive_features

NAME = "server"
HELP = "Run the KV-cache server (ZMQ for engine workers, HTTP for operators)."


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(NAME, help=HELP, description=HELP)
    add_arguments(parser, ServerConfig)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = from_namespace(ServerConfig, args)
    level = os.environ.get("LMCACHE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("lmcache.server")
    for line in inactive_features(cfg):
        log.warning("%s", line)

    from lmcache.server.app import Server  # the native core loads here, not for --help

    t0 = time.monotonic()
    server = Server(cfg)
    server.install_signal_handlers()
    server.startup()
    try:
        log.info(
            "lmcache server ready in %.2f s: ZMQ tcp://%s:%d, HTTP http://%s:%d, L1 %.2f GB (%s), "
            "eviction %s, chunk %d tokens, hash %s, transfer modes %s",
            time.monotonic() - t0,
            cfg.mp.host,
            server.zmq_port,
            cfg.http.http_host,
            server.http_port,
            cfg.storage_manager.l1.l1_size_gb,
            "lazy" if cfg.storage_manager.l1.l1_use_lazy else "eager",
            cfg.storage_manager.eviction.eviction_policy,
            cfg.mp.chunk_size,
            cfg.mp.hash_algorithm,
            ",".join(server.core.transfer_modes),
        )
        server.serve()
    finally:
        server.shutdown()
        log.info("lmcache server stopped")
    return ExitStatus.SUCCESS
