"""The explicit registry of ``lmcache`` commands.

Each command is a module that exposes:

* ``NAME``: the command word;
* ``HELP``: one line for ``lmcache --help``;
* ``register(subparsers)``: adds its parser and sets ``func=run`` as a default;
* ``run(args) -> int``: does the work and returns the exit status (never calls ``sys.exit``).

Commands never import each other; shared code lives in ``lmcache.cli.options``,
``lmcache.report``, ``lmcache.config`` or the client/protocol packages. Add a command by
importing its module here and listing it in :data:`COMMANDS`, in the order of ``--help``.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from lmcache.cli.commands import bench, config, describe, kvcache, ping, quota, server

__all__ = ["COMMANDS", "Command"]


class Command(Protocol):
    """What :mod:`lmcache.cli.main` needs of a command module."""

    NAME: str
    HELP: str

    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: tuple[Command, ...] = (server, ping, describe, kvcache, quota, bench, config)
