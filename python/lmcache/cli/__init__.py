"""The ``lmcache`` command line: :func:`lmcache.cli.main.main` and one module per command."""
