"""The ``plugin`` L2 adapter type: a backend class named by its import path.

Spec (LMCache 0.5.6's field names)::

    {"type": "plugin", "module_path": "my_pkg.l2", "class_name": "MyBackend",
     "adapter_params": {...}, "config_class_name": "MyBackendConfig",
     "num_workers": 1, "max_capacity_gb": 0}

* ``module_path`` (required): dotted module path, imported with :func:`importlib.import_module`;
* ``class_name`` (required): a class in that module implementing
  :class:`lmcache.l2.base.L2Backend` (checked: it must have every method);
* ``adapter_params`` (object, default ``{}``; ``config`` is accepted as another name for it): passed
  to the class as its one positional argument; with ``config_class_name`` (or a class named
  ``<class_name>Config`` in the module that has ``from_dict``) the class gets
  ``ConfigClass.from_dict(adapter_params)`` instead, as in 0.5.6;
* ours: ``num_workers`` (1: the backend is called from one thread; more needs a thread-safe
  backend), ``max_capacity_gb`` (0 = unbounded; above it the bridge evicts LRU objects and deletes
  them from the backend).

Unlike 0.5.6, the class implements the small synchronous protocol of :mod:`lmcache.l2.base`, not
LMCache's asynchronous ``L2AdapterInterface``: the asynchrony, locks, checksums and accounting are
provided in C++.
"""

from __future__ import annotations

import importlib
from typing import Any

from lmcache.errors import InvalidArgumentError
from lmcache.l2.base import BackendHandle, Fields

__all__ = ["REQUIRED_METHODS", "create_backend"]

REQUIRED_METHODS = ("put", "stat", "get", "delete", "list_objects")
GIB = 1 << 30


def _one_line(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return " ".join(s.split())


def create_backend(spec: dict[str, Any]) -> BackendHandle:
    """The factory of type ``plugin`` (called by the C++ bridge with the spec's own fields)."""
    f = Fields(spec)
    module_path = f.required_string("module_path")
    class_name = f.required_string("class_name")
    if f.has("adapter_params") and f.has("config"):
        raise f.fail("config", "is another name for 'adapter_params': give one of them")
    params = f.obj("adapter_params")
    if params is None:
        params = f.obj("config")
    params = {} if params is None else params
    config_class_name = f.string("config_class_name")
    num_workers = f.integer("num_workers", 1, 1, 256)
    capacity_gb = f.number("max_capacity_gb", 0.0, 0.0, 1e6)
    f.finish()

    try:
        module = importlib.import_module(module_path)
    except Exception as e:  # ImportError, or anything the module raises while importing
        raise f.fail("module_path", f"cannot be imported: {_one_line(e)}") from e
    cls = getattr(module, class_name, None)
    if cls is None:
        raise f.fail("class_name", f"names nothing in module '{module_path}'")
    if not isinstance(cls, type):
        raise f.fail("class_name", f"'{module_path}.{class_name}' is not a class")
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        what = ", ".join(m + "()" for m in missing)
        raise f.fail(
            "class_name",
            f"'{module_path}.{class_name}' is not an L2 backend"
            f" (missing {what}; see lmcache.l2.base.L2Backend)",
        )

    arg: Any = params
    cfg_cls = None
    if config_class_name is not None:
        cfg_cls = getattr(module, config_class_name, None)
        if cfg_cls is None or not callable(getattr(cfg_cls, "from_dict", None)):
            raise f.fail(
                "config_class_name", f"'{module_path}.{config_class_name}' is not a class with from_dict()"
            )
    else:
        candidate = getattr(module, class_name + "Config", None)
        if isinstance(candidate, type) and callable(getattr(candidate, "from_dict", None)):
            cfg_cls = candidate
    try:
        if cfg_cls is not None:
            arg = cfg_cls.from_dict(params)
        backend = cls(arg)
    except (ValueError, TypeError, KeyError) as e:
        raise InvalidArgumentError(
            f"field 'adapter_params' was refused by {class_name}: {_one_line(e)}"
        ) from e
    return BackendHandle(
        backend=backend,
        num_workers=num_workers,
        capacity_bytes=int(capacity_gb * GIB),
        details={"module_path": module_path, "class_name": class_name},
    )
