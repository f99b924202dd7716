"""Clients of a running lmcache server: :mod:`lmcache.client.http` for the HTTP admin API.

Clients never import ``lmcache.server``; they speak the wire formats only.
"""
