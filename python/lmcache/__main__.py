"""``python -m lmcache`` is the ``lmcache`` command."""

from lmcache.cli.main import entry_point

entry_point()
