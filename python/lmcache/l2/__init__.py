"""L2 adapters implemented in Python.

The adapter contract (asynchronous tasks, eventfds, locks, checksums, usage) lives in C++
(``cpp/include/lmcache/l2_sync_backend.h``); a Python backend only implements the small
synchronous protocol of :mod:`lmcache.l2.base`. Two types ship with lmcache:

* ``plugin`` (:mod:`lmcache.l2.plugin`): a backend class named by import path;
* ``s3`` (:mod:`lmcache.l2.s3`): Amazon S3 or an S3-compatible store, through boto3.

Both are registered when ``lmcache._native`` is imported; more types can be added with
``lmcache._native.l2.register_python_type(name, factory)``.
"""

from lmcache.l2.base import BackendHandle, Fields, L2Backend

__all__ = ["BackendHandle", "Fields", "L2Backend"]
