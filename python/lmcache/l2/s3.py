"""The ``s3`` L2 adapter type: Amazon S3 or an S3-compatible store, through boto3.

Spec::

    {"type": "s3", "bucket": "kv", "endpoint_url": "http://127.0.0.1:9000", "region": "us-east-1",
     "prefix": "lmcache/", "max_concurrency": 16}

Fields:

* where: ``bucket`` + optional ``endpoint_url`` (default: AWS), or LMCache 0.5.6's
  ``s3_endpoint`` (``"s3://<bucket>.<host>"`` or ``"<bucket>.<host>"``, virtual-hosted style;
  ``disable_tls`` picks http);
* ``region`` (or 0.5.6's ``s3_region``), ``prefix`` (``""``: prepended to every object name),
  ``addressing_style`` (``auto`` | ``virtual`` | ``path``; ``path`` for most S3-compatible
  servers);
* credentials: ``aws_access_key_id`` + ``aws_secret_access_key`` (+ ``aws_session_token``), or
  ``profile``, else boto3's default chain (environment, shared files, container/instance roles);
* ``max_concurrency`` (16; 0.5.6's ``s3_num_io_threads`` is read as this): requests in flight
  per batch, and the HTTP connection pool size; ``num_workers`` (2): batches in flight;
* ``max_capacity_gb`` (0 = unbounded; above it LRU objects are evicted and deleted);
* ``connect_timeout_s`` (10), ``read_timeout_s`` (60), ``max_attempts`` (3, botocore's
  standard retry mode); ``conditional_put`` (true: ``If-None-Match: *``, so the first writer
  wins against other servers too; turn off for stores that do not support it);
* accepted for 0.5.6 compatibility: ``s3_prefer_http2`` (ignored: boto3 speaks HTTP/1.1),
  ``s3_enable_s3express`` (only false).

Objects: name = ``prefix`` + the key's file stem with ``-SEP-`` written back as ``/``, which is
the object name LMCache 0.5.6's s3 adapter uses when the prefix is empty. Content = the raw
object bytes (as 0.5.6); the XXH64 checksum travels as user metadata ``x-amz-meta-lmcache-xxh64``
(16 hex digits), so objects stay readable by 0.5.6 and 0.5.6's objects are served to us
unverified. A restart lists the bucket under ``prefix`` (ListObjectsV2) and finds every object.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lmcache.errors import InvalidArgumentError
from lmcache.l2.base import BackendHandle, Fields

__all__ = ["CHECKSUM_META", "S3Backend", "create_backend", "object_name", "stem_of"]

CHECKSUM_META = "lmcache-xxh64"  # x-amz-meta-lmcache-xxh64
GIB = 1 << 30
_CHUNK = 1 << 20
T = TypeVar("T")
R = TypeVar("R")


def object_name(prefix: str, stem: str) -> str:
    return prefix + stem.replace("-SEP-", "/")


def stem_of(prefix: str, name: str) -> str | None:
    if not name.startswith(prefix):
        return None
    return name[len(prefix) :].replace("/", "-SEP-")


class _ViewReader(io.RawIOBase):
    """A seekable file over a memoryview, so botocore can hash, send and rewind without a copy of
    the whole object."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view: memoryview | None = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        assert self._view is not None
        n = max(0, min(len(b), len(self._view) - self._pos))
        memoryview(b).cast("B")[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        assert self._view is not None
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return 0 if self._view is None else len(self._view)

    def close(self) -> None:
        self._view = None
        super().close()


def _code(e: BaseException) -> str:
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        err = resp.get("Error", {})
        code = str(err.get("Code", ""))
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code or str(status or "")
    return ""


def _absent(e: BaseException) -> bool:
    return _code(e) in ("404", "NoSuchKey", "NotFound")


class S3Backend:
    """One bucket (and prefix) as an :class:`lmcache.l2.base.L2Backend`."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        max_concurrency: int = 16,
        conditional_put: bool = True,
    ) -> None:
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix
        self._conditional = conditional_put
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="lmcache-s3")
        self._closed = threading.Event()

    # ---- helpers ----
    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R | Exception]:
        """fn over items on the pool; an exception becomes that item's result."""

        def guarded(x: T) -> R | Exception:
            try:
                return fn(x)
            except Exception as e:
                return e

        if len(items) == 1:
            return [guarded(items[0])]
        return list(self._pool.map(guarded, items))

    def _key(self, name: str) -> str:
        return object_name(self.prefix, name)

    # ---- L2Backend ----
    def put(
        self, names: list[str], buffers: list[memoryview], checksums: list[int]
    ) -> list[bool | Exception]:
        def one(i: int) -> bool:
            extra: dict[str, Any] = {"IfNoneMatch": "*"} if self._conditional else {}
            body = _ViewReader(buffers[i])
            try:
                self._s3.put_object(
                    Bucket=self.bucket,
                    Key=self._key(names[i]),
                    Body=body,
                    ContentLength=len(buffers[i]),
                    Metadata={CHECKSUM_META: f"{checksums[i]:016x}"},
                    **extra,
                )
            except Exception as e:
                # 412: the object exists (first writer wins); 409: another write of it is in flight.
                if _code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    return True
                raise
            finally:
                body.close()
            return True

        return self._map(one, range(len(names)))

    def stat(self, names: list[str]) -> list[int | Exception | None]:
        def one(name: str) -> int | None:
            try:
                return int(self._s3.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"])
            except Exception as e:
                if _absent(e):
                    return None
                raise

        return self._map(one, names)

    def get(
        self, names: list[str], buffers: list[memoryview]
    ) -> list[tuple[int, int | None] | Exception | None]:
        def one(i: int) -> tuple[int, int | None] | None:
            try:
                resp = self._s3.get_object(Bucket=self.bucket, Key=self._key(names[i]))
            except Exception as e:
                if _absent(e):
                    return None
                raise
            body = resp["Body"]
            try:
                size = int(resp["ContentLength"])
                meta = resp.get("Metadata") or {}
                raw = meta.get(CHECKSUM_META)
                checksum = int(raw, 16) if isinstance(raw, str) and len(raw) == 16 else None
                view = buffers[i]
                if size != len(view):
                    return size, checksum
                off = 0
                while off < size:
                    chunk = body.read(min(_CHUNK, size - off))
                    if not chunk:
                        break
                    view[off : off + len(chunk)] = chunk
                    off += len(chunk)
                if off != size:
                    raise OSError(f"short read of {names[i]}: {off} of {size} bytes")
                return size, checksum
            finally:
                body.close()

        return self._map(one, range(len(names)))

    def delete(self, names: list[str]) -> list[bool | Exception]:
        present = self.stat(names)
        keys = [self._key(n) for n, p in zip(names, present, strict=True) if isinstance(p, int)]
        failed: dict[str, Exception] = {}
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            resp = self._s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            for err in resp.get("Errors", []):
                failed[err.get("Key", "")] = OSError(f"{err.get('Code')}: {err.get('Message')}")
        out: list[bool | Exception] = []
        for n, p in zip(names, present, strict=True):
            if isinstance(p, Exception):
                out.append(p)
            elif p is None:
                out.append(False)
            else:
                out.append(failed.get(self._key(n), True))
        return out

    def list_objects(self) -> Iterator[tuple[str, int]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                stem = stem_of(self.prefix, obj["Key"])
                if stem is not None:
                    yield stem, int(obj["Size"])

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._pool.shutdown(wait=True)
        close = getattr(self._s3, "close", None)
        if callable(close):
            close()


def _split_lmcache_endpoint(endpoint: str, disable_tls: bool) -> tuple[str, str]:
    """'s3://<bucket>.<host>' or '<bucket>.<host>' -> (bucket, endpoint_url)."""
    host = endpoint.removeprefix("s3://").rstrip("/")
    bucket, dot, rest = host.partition(".")
    if not bucket or not dot or not rest:
        raise InvalidArgumentError(
            "field 's3_endpoint' must look like 's3://<bucket>.<host>' or '<bucket>.<host>',"
            f" got {endpoint!r}"
        )
    return bucket, ("http://" if disable_tls else "https://") + rest


def create_backend(spec: dict[str, Any]) -> BackendHandle:
    """The factory of type ``s3`` (called by the C++ bridge with the spec's own fields)."""
    f = Fields(spec)
    bucket = f.string("bucket")
    endpoint_url = f.string("endpoint_url")
    s3_endpoint = f.string("s3_endpoint")
    disable_tls = f.boolean("disable_tls", False)
    if s3_endpoint is not None:
        if bucket is not None or endpoint_url is not None:
            raise f.fail("s3_endpoint", "cannot be combined with 'bucket' / 'endpoint_url' (give one form)")
        bucket, endpoint_url = _split_lmcache_endpoint(s3_endpoint, disable_tls)
    if not bucket:
        raise f.fail("bucket", "is required (a non-empty string), or give 's3_endpoint'")
    if f.has("region") and f.has("s3_region"):
        raise f.fail("s3_region", "is another name for 'region': give one of them")
    region = f.string("region") or f.string("s3_region")
    prefix = f.string("prefix", "") or ""
    addressing = f.choice(
        "addressing_style", "virtual" if s3_endpoint is not None else "auto", ["auto", "virtual", "path"]
    )
    key_id = f.string("aws_access_key_id")
    secret = f.string("aws_secret_access_key")
    token = f.string("aws_session_token")
    profile = f.string("profile")
    if (key_id is None) != (secret is None):
        raise f.fail(
            "aws_secret_access_key" if secret is None else "aws_access_key_id",
            "is required with the other static credential",
        )
    io_threads = f.integer("s3_num_io_threads", 16, 1, 1024)
    max_concurrency = f.integer("max_concurrency", io_threads, 1, 1024)
    num_workers = f.integer("num_workers", 2, 1, 64)
    capacity_gb = f.number("max_capacity_gb", 0.0, 0.0, 1e9)
    connect_timeout = f.number("connect_timeout_s", 10.0, 0.1, 3600.0)
    read_timeout = f.number("read_timeout_s", 60.0, 0.1, 3600.0)
    max_attempts = f.integer("max_attempts", 3, 1, 20)
    conditional_put = f.boolean("conditional_put", True)
    f.boolean("s3_prefer_http2", True)
    if f.boolean("s3_enable_s3express", False):
        raise f.fail("s3_enable_s3express", "is not supported (S3 Express One Zone signing)")
    f.finish()

    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
    except ImportError as e:
        raise InvalidArgumentError("needs boto3: pip install 'lmcache[s3]'") from e

    session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
    client = session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(
            max_pool_connections=max_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": addressing},
        ),
    )
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as e:
        code = _code(e)
        where = f"bucket '{bucket}'" + (f" at {endpoint_url}" if endpoint_url else "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise OSError(f"{where} does not exist") from e
        raise OSError(f"cannot reach {where}: {' '.join(str(e).split())}") from e
    backend = S3Backend(client, bucket, prefix, max_concurrency, conditional_put)
    return BackendHandle(
        backend=backend,
        num_workers=num_workers,
        capacity_bytes=int(capacity_gb * GIB),
        details={
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": endpoint_url or "(aws)",
            "region": region or "(default)",
            "max_concurrency": str(max_concurrency),
        },
    )
