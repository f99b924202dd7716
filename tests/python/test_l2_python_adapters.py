"""L2 adapters implemented in Python (types "plugin" and "s3") through the C++ bridge
(cpp/bindings/l2_python.cc), driven by the same contract cases as fs_native (the control):
round trip, first writer wins, lookup bits + unlock, wrong-size buffers, corruption behind the
bridge's back, restart, close with queued work, bad specs. s3 runs against a real local
S3-compatible server (moto in server mode, a subprocess on a free port)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import lmcache
from lmcache import errors
from lmcache._native import keys, l2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # l2_example_plugin

import l2_example_plugin as plugin_mod  # noqa: E402

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region": "us-east-1"}


def make(n: int, start: int = 0, salt: str = "", model: str = "org/model") -> keys.KeyList:
    return keys.make_keys(
        [(i + 1000).to_bytes(16, "big") for i in range(start, start + n)], model, 0, 0, salt
    )


def data(seed: int, size: int) -> bytearray:
    return bytearray((seed * 131 + i * 7) & 0xFF for i in range(size))


def store(
    a: l2.Adapter, ks: keys.KeyList, bufs: list[Any], timeout: float = 30.0
) -> tuple[bool, list[bool], int]:
    tid = a.submit_store(ks, bufs)
    deadline = time.monotonic() + timeout
    while True:
        for t, ok, bits, nbytes in a.pop_completed_stores():
            if t == tid:
                return ok, bits, nbytes
        assert a.wait_fd(a.store_event_fd, max(0.0, deadline - time.monotonic())), "store timed out"


def lookup(a: l2.Adapter, ks: keys.KeyList, timeout: float = 30.0) -> list[bool]:
    tid = a.submit_lookup_and_lock(ks)
    deadline = time.monotonic() + timeout
    while (r := a.query_lookup_result(tid)) is None:
        assert a.wait_fd(a.lookup_event_fd, max(0.0, deadline - time.monotonic())), "lookup timed out"
    return r


def load(a: l2.Adapter, ks: keys.KeyList, bufs: list[Any], timeout: float = 30.0) -> list[bool]:
    tid = a.submit_load(ks, bufs)
    deadline = time.monotonic() + timeout
    while (r := a.query_load_result(tid)) is None:
        assert a.wait_fd(a.load_event_fd, max(0.0, deadline - time.monotonic())), "load timed out"
    return r


def counters(a: l2.Adapter) -> dict[str, int]:
    return a.status()["counters"]  # type: ignore[no-any-return]


# ---- the local S3 server ----


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MotoServer:
    proc: subprocess.Popen[bytes]
    url: str

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_moto() -> MotoServer:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    return MotoServer(proc, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = start_moto()
    yield server
    server.stop()


# ---- the adapter kinds under test ----


class Kind:
    name = ""

    def spec(self) -> str:
        raise NotImplementedError

    def damage(self, stem: str) -> None:
        """Change one byte of the stored object, keeping whatever checksum it carries."""
        raise NotImplementedError


class PluginKind(Kind):
    name = "plugin"

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def spec(self) -> str:
        return json.dumps(
            {
                "type": "plugin",
                "module_path": "l2_example_plugin",
                "class_name": "MemoryBackend",
                "adapter_params": {"bucket": self.bucket},
                "num_workers": 2,
            }
        )

    def damage(self, stem: str) -> None:
        objs = plugin_mod.BUCKETS[self.bucket]
        raw, checksum = objs[stem]
        objs[stem] = (raw[:7] + bytes([raw[7] ^ 1]) + raw[8:], checksum)


class S3Kind(Kind):
    name = "s3"

    def __init__(self, server: MotoServer, bucket: str) -> None:
        self.server = server
        self.bucket = bucket
        self.prefix = "run/"
        server.client().create_bucket(Bucket=bucket)

    def spec(self) -> str:
        return json.dumps(
            {
                "type": "s3",
                "bucket": self.bucket,
                "endpoint_url": self.server.url,
                "prefix": self.prefix,
                "addressing_style": "path",
                "max_concurrency": 8,
                **CREDS,
            }
        )

    def damage(self, stem: str) -> None:
        c = self.server.client()
        key = self.prefix + stem.replace("-SEP-", "/")
        obj = c.get_object(Bucket=self.bucket, Key=key)
        raw = obj["Body"].read()
        c.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=raw[:7] + bytes([raw[7] ^ 1]) + raw[8:],
            Metadata=obj["Metadata"],
        )


class FsKind(Kind):
    name = "fs_native"

    def __init__(self, path: Path) -> None:
        self.path = path

    def spec(self) -> str:
        return json.dumps({"type": "fs_native", "base_path": str(self.path), "num_workers": 2})

    def damage(self, stem: str) -> None:
        with open(self.path / (stem + ".data"), "r+b") as f:  # same inode: the xattr checksum stays
            f.seek(7)
            b = f.read(1)
            f.seek(7)
            f.write(bytes([b[0] ^ 1]))


@pytest.fixture(params=["plugin", "s3", "fs_native"])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Kind:
    bucket = f"b-{abs(hash(request.node.nodeid)) % 10**12}"
    if request.param == "plugin":
        return PluginKind(bucket)
    if request.param == "s3":
        return S3Kind(request.getfixturevalue("moto"), bucket)
    return FsKind(tmp_path / "l2")


class TestContract:
    def test_round_trip(self, kind: Kind) -> None:
        with l2.create_adapter(kind.spec()) as a:
            assert a.type == kind.name
            ks = make(3, salt="s1")
            bufs = [data(1, 4096), data(2, 100_000), data(3, 1)]
            ok, bits, nbytes = store(a, ks, bufs)
            assert ok and bits == [True] * 3 and nbytes == 4096 + 100_000 + 1
            assert lookup(a, ks) == [True] * 3
            a.submit_unlock(ks)
            out = [bytearray(len(b)) for b in bufs]
            assert load(a, ks, out) == [True] * 3
            assert out == bufs
            u = a.usage()
            assert u["total_bytes"] == nbytes and u["objects"] == 3 and u["bytes_by_salt"] == {"s1": nbytes}
            page, cursor = a.list_keys()
            assert cursor == "" and sorted(s for s, _ in page) == sorted(ks.to_string(i) for i in range(3))
            c = counters(a)
            assert c["loaded_objects"] == 3 and c["corrupt_objects"] == 0 and c["io_errors"] == 0
            assert a.status()["healthy"]

    def test_first_writer_wins(self, kind: Kind) -> None:
        with l2.create_adapter(kind.spec()) as a:
            ks = make(1, start=10)
            first, second = data(10, 5000), data(11, 5000)
            assert store(a, ks, [first])[2] == 5000
            ok, bits, nbytes = store(a, ks, [second])
            assert ok and bits == [True] and nbytes == 0
            out = [bytearray(5000)]
            assert load(a, ks, out) == [True] and out[0] == first
            assert counters(a)["store_skipped"] == 1

    def test_lookup_bits_and_unlock(self, kind: Kind) -> None:
        with l2.create_adapter(kind.spec()) as a:
            present = make(2, start=20)
            store(a, present, [data(20, 300), data(21, 300)])
            mixed = keys.make_keys(
                [present[0][0], (999).to_bytes(16, "big"), present[1][0]], "org/model", 0, 0, ""
            )
            assert lookup(a, mixed) == [True, False, True]
            a.submit_unlock(mixed)
            c = counters(a)
            assert c["lookup_hits"] == 2 and c["lookup_misses"] == 1
            assert a.delete(present) == 2
            assert lookup(a, present) == [False, False]

    def test_wrong_size_buffer_is_a_zero_bit(self, kind: Kind) -> None:
        with l2.create_adapter(kind.spec()) as a:
            ks = make(1, start=30)
            d = data(30, 2048)
            store(a, ks, [d])
            assert load(a, ks, [bytearray(2047)]) == [False]
            assert load(a, ks, [bytearray(4096)]) == [False]
            assert counters(a)["size_mismatches"] == 2
            out = bytearray(2048)
            assert load(a, ks, [out]) == [True] and out == d  # kept

    def test_corruption_is_a_counted_miss(self, kind: Kind) -> None:
        with l2.create_adapter(kind.spec()) as a:
            ks = make(2, start=40)
            d = [data(40, 8192), data(41, 8192)]
            store(a, ks, d)
            kind.damage(ks.to_string(0))
            out = [bytearray(8192), bytearray(8192)]
            assert load(a, ks, out) == [False, True]
            assert out[1] == d[1]
            assert counters(a)["corrupt_objects"] == 1
            assert lookup(a, ks.slice(0, 1)) == [False]  # dropped from the backend too
            assert a.usage()["objects"] == 1

    def test_restart_finds_objects(self, kind: Kind) -> None:
        ks = make(3, start=50, salt="r")
        bufs = [data(50, 1000), data(51, 70_000), data(52, 3)]
        with l2.create_adapter(kind.spec()) as a:
            assert store(a, ks, bufs)[0]
            before = a.usage()
        with l2.create_adapter(kind.spec()) as b:
            after = b.usage()
            assert (
                after["total_bytes"] == before["total_bytes"]
                and after["bytes_by_salt"] == before["bytes_by_salt"]
            )
            assert lookup(b, ks) == [True] * 3
            b.submit_unlock(ks)
            out = [bytearray(len(x)) for x in bufs]
            assert load(b, ks, out) == [True] * 3 and out == bufs
            c = counters(b)
            assert c["unverified_loads"] == 0 and c["corrupt_objects"] == 0

    def test_close_completes_queued_work(self, kind: Kind) -> None:
        a = l2.create_adapter(kind.spec())
        ks = make(40, start=100)
        bufs = [data(i, 16384) for i in range(40)]
        ids = {a.submit_store(ks.slice(i, i + 1), [bufs[i]]) for i in range(40)}
        load_id = a.submit_load(ks.slice(0, 1), [bytearray(16384)])
        a.close()
        done = {t for t, _, _, _ in a.pop_completed_stores()}
        assert done == ids
        assert a.query_load_result(load_id) is not None
        assert a.status()["pending_tasks"] == 0 and not a.status()["healthy"]
        with pytest.raises(errors.UnavailableError):
            a.submit_store(ks.slice(0, 1), [bufs[0]])
        a.close()


# ---- bad specs: one line naming the field ----


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"type": "plugin"}, "L2 adapter 'plugin': field 'module_path' is required"),
        ({"type": "plugin", "module_path": "l2_example_plugin"}, "field 'class_name' is required"),
        (
            {"type": "plugin", "module_path": "no_such_module_x", "class_name": "A"},
            "field 'module_path' cannot be imported: ModuleNotFoundError",
        ),
        (
            {"type": "plugin", "module_path": "l2_example_plugin", "class_name": "Nope"},
            "field 'class_name' names nothing in module 'l2_example_plugin'",
        ),
        (
            {"type": "plugin", "module_path": "l2_example_plugin", "class_name": "BUCKETS"},
            "is not a class",
        ),
        (
            {"type": "plugin", "module_path": "l2_example_plugin", "class_name": "NotABackend"},
            "is not an L2 backend (missing stat(), get(), delete(), list_objects()",
        ),
        (
            {
                "type": "plugin",
                "module_path": "l2_example_plugin",
                "class_name": "MemoryBackend",
                "adapter_params": {"colour": 1},
            },
            "field 'adapter_params' was refused by MemoryBackend: ValueError: unknown parameter 'colour'",
        ),
        (
            {
                "type": "plugin",
                "module_path": "l2_example_plugin",
                "class_name": "MemoryBackend",
                "num_workers": 0,
            },
            "field 'num_workers' must be an integer in [1, 256], got 0",
        ),
        (
            {"type": "plugin", "module_path": "l2_example_plugin", "class_name": "MemoryBackend", "extra": 1},
            "unknown field 'extra'",
        ),
        (
            {"type": "plugin", "module_path": "m", "class_name": "C", "shared": "no"},
            "field 'shared' must be true",
        ),
        ({"type": "s3"}, "L2 adapter 's3': field 'bucket' is required"),
        ({"type": "s3", "bucket": "b", "max_concurrency": "8"}, "field 'max_concurrency' must be an integer"),
        (
            {"type": "s3", "bucket": "b", "addressing_style": "sideways"},
            "field 'addressing_style' must be one of",
        ),
        ({"type": "s3", "s3_endpoint": "nodots", "s3_region": "x"}, "field 's3_endpoint' must look like"),
        (
            {"type": "s3", "bucket": "b", "aws_access_key_id": "k"},
            "field 'aws_secret_access_key' is required",
        ),
        (
            {"type": "s3", "bucket": "b", "s3_enable_s3express": True},
            "field 's3_enable_s3express' is not supported",
        ),
    ],
)
def test_bad_specs(spec: dict[str, Any], needle: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as e:
        l2.create_adapter(json.dumps(spec))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg


def test_unreachable_or_missing_bucket_is_an_io_error(moto: MotoServer) -> None:
    with pytest.raises(
        errors.StorageIOError, match=r"L2 adapter 's3': bucket 'no-such-bucket' at .* does not exist"
    ):
        l2.create_adapter(
            json.dumps({"type": "s3", "bucket": "no-such-bucket", "endpoint_url": moto.url, **CREDS})
        )
    port = free_port()
    with pytest.raises(errors.StorageIOError, match="L2 adapter 's3': cannot reach bucket 'b'") as e:
        l2.create_adapter(
            json.dumps(
                {
                    "type": "s3",
                    "bucket": "b",
                    "endpoint_url": f"http://127.0.0.1:{port}",
                    "max_attempts": 1,
                    "connect_timeout_s": 1,
                    **CREDS,
                }
            )
        )
    assert "\n" not in str(e.value)


# ---- failures inside the backend ----


def tracked(bucket: str, **extra: Any) -> tuple[l2.Adapter, plugin_mod.TrackedBackend]:
    a = l2.create_adapter(
        json.dumps(
            {
                "type": "plugin",
                "module_path": "l2_example_plugin",
                "class_name": "TrackedBackend",
                "adapter_params": {"bucket": bucket},
                **extra,
            }
        )
    )
    return a, plugin_mod.INSTANCES[-1]


def test_backend_exceptions_are_failures_not_crashes(caplog: pytest.LogCaptureFixture) -> None:
    a, be = tracked("raising")
    with a:
        ks = make(4, start=200)
        bufs = [data(i, 512) for i in range(4)]
        be.fail = {"put"}
        with caplog.at_level("WARNING", logger="lmcache.l2"):
            ok, bits, nbytes = store(a, ks, bufs)
        assert not ok and bits == [False] * 4 and nbytes == 0
        assert any(
            "backend put() raised RuntimeError: injected failure in put" in r.getMessage()
            for r in caplog.records
        )
        assert counters(a)["io_errors"] == 4

        be.fail = set()
        be.fail_keys = {ks.to_string(1)}  # one key fails, per key
        ok, bits, _ = store(a, ks, bufs)
        assert not ok and bits == [True, False, True, True]

        be.fail = {"get", "stat"}
        assert load(a, ks, [bytearray(512) for _ in range(4)]) == [False] * 4
        assert lookup(a, make(1, start=900)) == [False]  # a miss whose probe raised
        be.fail = set()
        be.fail_keys = set()
        out = [bytearray(512) for _ in range(4)]
        assert load(a, ks, out) == [True, False, True, True]
        assert out[0] == bufs[0]
        assert a.status()["healthy"]
    assert be.closed == 1


def test_bad_results_from_the_backend_are_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    a, be = tracked("bad-results")
    with a:
        ks = make(2, start=300)
        monkeypatch.setattr(be, "put", lambda names, bufs, sums: [True])  # one result too few
        assert store(a, ks, [data(1, 10), data(2, 10)])[1] == [False, False]
        monkeypatch.setattr(be, "put", lambda names, bufs, sums: ["yes", 1])  # not bools
        assert store(a, ks, [data(1, 10), data(2, 10)])[1] == [False, False]
        monkeypatch.setattr(be, "put", lambda names, bufs, sums: None)
        assert store(a, ks, [data(1, 10), data(2, 10)])[1] == [False, False]
        assert counters(a)["io_errors"] == 6


def test_views_are_released_after_the_call() -> None:
    kept: list[memoryview] = []
    a, be = tracked("views")
    with a:
        real_put = be.put

        def keep(names: list[str], bufs: list[memoryview], sums: list[int]) -> list[bool | Exception]:
            kept.extend(bufs)
            return real_put(names, bufs, sums)

        be.put = keep  # type: ignore[method-assign]
        assert store(a, make(1, start=400), [data(4, 64)])[0]
    with pytest.raises(ValueError, match="released"):
        kept[0].tobytes()


def test_foreign_s3_objects_are_served_unverified(moto: MotoServer) -> None:
    """An object LMCache 0.5.6 wrote (raw bytes, no checksum metadata, its name) is found by a lookup
    probe and loaded unverified."""
    c = moto.client()
    c.create_bucket(Bucket="foreign")
    ks = make(1, start=500, model="meta/llama")
    raw = bytes(data(5, 3000))
    stem = ks.to_string(0)
    assert stem.startswith("meta-SEP-llama@")
    c.put_object(Bucket="foreign", Key=stem.replace("-SEP-", "/"), Body=raw)  # 0.5.6's object name
    spec = {"type": "s3", "bucket": "foreign", "endpoint_url": moto.url, "addressing_style": "path", **CREDS}
    with l2.create_adapter(json.dumps(spec)) as a:
        assert a.usage()["objects"] == 1  # found by the listing at start-up
        out = bytearray(3000)
        assert load(a, ks, [out]) == [True] and bytes(out) == raw
        assert counters(a)["unverified_loads"] == 1
    # Our objects carry the checksum as metadata, raw bytes as content (readable by 0.5.6).
    with l2.create_adapter(json.dumps(spec)) as a:
        ks2 = make(1, start=501, model="meta/llama")
        store(a, ks2, [data(6, 100)])
    head = c.get_object(Bucket="foreign", Key=ks2.to_string(0).replace("-SEP-", "/"))
    assert head["Body"].read() == bytes(data(6, 100))
    assert len(head["Metadata"]["lmcache-xxh64"]) == 16


def test_s3_server_going_away_fails_tasks_not_the_process() -> None:
    server = start_moto()
    try:
        server.client().create_bucket(Bucket="gone")
        spec = {
            "type": "s3",
            "bucket": "gone",
            "endpoint_url": server.url,
            "max_attempts": 1,
            "connect_timeout_s": 1,
            "read_timeout_s": 2,
            "addressing_style": "path",
            **CREDS,
        }
        with l2.create_adapter(json.dumps(spec)) as a:
            ks = make(2, start=600)
            assert store(a, ks, [data(1, 100), data(2, 100)])[0]
            server.stop()
            assert store(a, make(2, start=700), [data(1, 100), data(2, 100)])[1] == [False, False]
            assert load(a, ks, [bytearray(100), bytearray(100)]) == [False, False]
            assert counters(a)["io_errors"] >= 4
    finally:
        server.stop()


def test_s3_listing_pages_and_many_objects(moto: MotoServer) -> None:
    moto.client().create_bucket(Bucket="many")
    spec = {
        "type": "s3",
        "bucket": "many",
        "endpoint_url": moto.url,
        "prefix": "p/",
        "addressing_style": "path",
        **CREDS,
    }
    ks = make(1100, start=1000)
    with l2.create_adapter(json.dumps(spec)) as a:
        assert store(a, ks, [data(i % 7, 16) for i in range(1100)], timeout=120)[0]
    with l2.create_adapter(json.dumps(spec)) as b:  # ListObjectsV2 returns 1000 per page
        assert b.usage()["objects"] == 1100
        page, cursor = b.list_keys(page_size=600)
        assert len(page) == 600 and cursor
        assert b.delete(ks.slice(0, 100)) == 100
    with l2.create_adapter(json.dumps(spec)) as c:
        assert c.usage()["objects"] == 1000


# ---- registration ----


def test_types_are_registered() -> None:
    types = l2.adapter_types()
    assert "plugin" in types and "s3" in types and types == sorted(types)


def test_register_python_type() -> None:
    def factory(fields: dict[str, Any]) -> Any:
        from lmcache.l2.base import BackendHandle, Fields

        f = Fields(fields)
        bucket = f.required_string("bucket")
        f.finish()
        return BackendHandle(plugin_mod.MemoryBackend({"bucket": bucket}), details={"bucket": bucket})

    l2.register_python_type("mem_test", factory)
    try:
        assert "mem_test" in l2.adapter_types()
        with pytest.raises(errors.AlreadyExistsError):
            l2.register_python_type("mem_test", factory)
        with pytest.raises(errors.AlreadyExistsError):
            l2.register_python_type("fs", factory)
        with l2.create_adapter('{"type":"mem_test","bucket":"reg"}') as a:
            assert a.type == "mem_test"
            assert ("bucket", "reg") in a.status()["details"].items()
            assert store(a, make(1), [data(1, 10)])[0]
        with pytest.raises(
            errors.InvalidArgumentError, match="L2 adapter 'mem_test': field 'bucket' is required"
        ):
            l2.create_adapter('{"type":"mem_test"}')
        with pytest.raises(errors.InvalidArgumentError, match="unknown field 'x'"):
            l2.create_adapter('{"type":"mem_test","bucket":"b","x":1}')
    finally:
        l2.unregister_python_type("mem_test")
    assert "mem_test" not in l2.adapter_types()
    with pytest.raises(errors.NotFoundError):
        l2.unregister_python_type("mem_test")


# ---- interpreter shutdown ----

SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    sys.path.insert(0, {here!r})
    import l2_example_plugin as p
    from lmcache._native import keys, l2

    class Slow(p.MemoryBackend):
        def put(self, names, bufs, sums):
            time.sleep(0.2)
            return super().put(names, bufs, sums)

    p.Slow = Slow
    spec = json.dumps({{"type": "plugin", "module_path": "l2_example_plugin", "class_name": "Slow",
                        "num_workers": 2}})
    a = l2.create_adapter(spec)            # module global, never closed
    ks = keys.make_keys([i.to_bytes(16, "big") for i in range(50)], "m", 0, 0, "")
    bufs = [bytearray(1000) for _ in range(50)]
    for i in range(50):
        a.submit_store(ks.slice(i, i + 1), [bufs[i]])
    mode = sys.argv[1]
    if mode == "thread":
        # a C++-driven loop would keep calling; emulate a Python thread submitting until exit
        def spin():
            while True:
                try:
                    a.submit_lookup_and_lock(ks)
                except Exception:
                    return
                time.sleep(0.01)
        threading.Thread(target=spin, daemon=True).start()
    time.sleep(0.3)
    print("exiting", flush=True)
    """
)


@pytest.mark.parametrize("mode", ["plain", "thread"])
def test_interpreter_exit_with_busy_adapters_does_not_hang(mode: str, tmp_path: Path) -> None:
    script = tmp_path / "exit.py"
    script.write_text(SHUTDOWN_SCRIPT.format(here=str(HERE)))
    env = dict(os.environ)
    # The lmcache under test, as this process imported it (installed in CI, the tree locally).
    pkg_root = Path(lmcache.__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(pkg_root), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, str(script), mode], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert b"exiting" in r.stdout


def test_backend_is_released_with_its_adapter() -> None:
    import gc

    before = l2.live_python_backends()
    a, be = tracked("release")
    assert l2.live_python_backends() == before + 1
    del a
    gc.collect()
    assert l2.live_python_backends() == before
    assert be.closed == 1
