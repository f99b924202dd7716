"""L2 policies and adapters of ``lmcache server``.

Accepted ranges, and why:

* ``--l2-store-policy`` / ``--l2-prefetch-policy``: the policies of the project's configuration
  reference (``default``/``skip_l1``, ``default``/``retain``).
* ``--l2-prefetch-max-in-flight``: 1 to 65536 concurrent loads (0 would never prefetch; far more
  would only pin L1 memory).
* ``--l2-adapter``: repeatable; each value is the text of a JSON object whose ``"type"`` is a
  registered adapter type (:data:`L2_ADAPTER_TYPES`). The adapter's own fields are checked by the
  adapter when it is created. The values are kept as the JSON text given, in order (the cascade
  order); :attr:`L2Config.adapters` decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lmcache.config.fields import Requirement, decode_json_object, number_range, option

__all__ = [
    "L2_ADAPTER_TYPES",
    "L2_PREFETCH_POLICIES",
    "L2_STORE_POLICIES",
    "L2Config",
    "adapter_type",
]

L2_STORE_POLICIES = ("default", "skip_l1")
L2_PREFETCH_POLICIES = ("default", "retain")

# The registered types of the project's configuration reference, plus fault_inject (LMCache 0.5.6
# registers it for testing failure handling).
L2_ADAPTER_TYPES = (
    "nixl_store",
    "nixl_store_dynamic",
    "fs",
    "fs_native",
    "mock",
    "mooncake_store",
    "aerospike",
    "s3",
    "resp",
    "plugin",
    "native_plugin",
    "raw_block",
    "dax",
    "fault_inject",
)


def adapter_type(text: str) -> str | None:
    """The ``"type"`` of an ``--l2-adapter`` value, or None when it has no string type."""
    spec = decode_json_object(text)
    kind = spec.get("type") if spec is not None else None
    return kind if isinstance(kind, str) else None


_ADAPTER = Requirement(
    'with a "type" that is one of ' + ", ".join(L2_ADAPTER_TYPES),
    lambda text: adapter_type(text) in L2_ADAPTER_TYPES,
)


@dataclass(frozen=True, kw_only=True)
class L2Config:
    """L2 storage: the store and prefetch policies and the adapters, in cascade order."""

    TITLE: ClassVar[str] = "L2 Policies and Adapters"

    l2_store_policy: str = option(
        "--l2-store-policy",
        "Which adapters receive each stored key, and whether L1 keeps it. default: every adapter, "
        "and L1 keeps the key. skip_l1: every adapter, then the key is deleted from L1 (L1 as a "
        "write buffer).",
        "default",
        choices=L2_STORE_POLICIES,
    )
    l2_prefetch_policy: str = option(
        "--l2-prefetch-policy",
        "Which adapter loads a key that several adapters hold, and how long it stays in L1. "
        "default: the first adapter (lowest index); prefetched keys are temporary, deleted once "
        "the reader is done. retain: the same load plan, and prefetched keys stay in L1.",
        "default",
        choices=L2_PREFETCH_POLICIES,
    )
    l2_prefetch_max_in_flight: int = option(
        "--l2-prefetch-max-in-flight",
        "Most L2 loads (prefetch requests) in flight at once, which bounds the L1 memory that "
        "prefetching holds.",
        8,
        validate=number_range(ge=1, le=65536),
        metavar="N",
    )
    l2_adapter: tuple[str, ...] = option(
        "--l2-adapter",
        'One L2 adapter, as a JSON object whose "type" field selects the adapter type; the other '
        "fields are the adapter's own. Repeat the flag for several adapters: their order is the "
        "cascade order.",
        (),
        sequence="repeat",
        json_object=True,
        validate=_ADAPTER,
        metavar="JSON",
    )

    @property
    def adapters(self) -> list[dict[str, Any]]:
        """The adapter specifications, decoded (fresh dicts on each call), in cascade order."""
        out: list[dict[str, Any]] = []
        for text in self.l2_adapter:
            spec = decode_json_object(text)
            if spec is None:  # not reachable for a validated instance
                raise ValueError(f"--l2-adapter: not a JSON object: {text!r}")
            out.append(spec)
        return out
