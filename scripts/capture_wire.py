#!/usr/bin/env python3
"""Record real LMCache 0.5.6 ZMQ traffic as test fixtures.

Starts a real LMCache 0.5.6 server (from the reference venv, see
scripts/lmcache-venv.sh) on free 127.0.0.1 ports, puts a recording
ROUTER<->DEALER proxy in front of its ZMQ port, drives traffic through the
proxy (a raw probe client, or `lmcache bench server`), and writes every
multipart message as hex frames plus a readable msgpack decoding to
tests/python/fixtures/wire/<scenario>.json.

It must run with the venv's interpreter (it needs pyzmq and msgspec):

    LMCACHE_TRACK_USAGE=false DO_NOT_TRACK=1 LMCACHE_DISABLE_BANNER=1 \\
      /opt/lmcache-0.5.6-venv/bin/python scripts/capture_wire.py --scenario all

Everything it starts is stopped again, and the POSIX SHM segments it caused
(`/dev/shm/lmcache_*` of processes it started, now dead) are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import zmq

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "python" / "fixtures" / "wire"
DEFAULT_VENV = Path("/opt/lmcache-0.5.6-venv")
QUIET_ENV = {"LMCACHE_TRACK_USAGE": "false", "DO_NOT_TRACK": "1", "LMCACHE_DISABLE_BANNER": "1"}
# A small KV cache keeps the fixtures small: 2 layers, 64 blocks of 16 tokens, 1 head of 32.
SHAPE_SPEC = "(2,64,16,1,32):float16:2"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- decoding


def _readable(obj: Any) -> Any:
    """A JSON-friendly rendering of a decoded msgpack value (for humans only)."""
    if isinstance(obj, bytes):
        if len(obj) > 64:  # the frame itself holds the full value; keep the rendering short
            return {"$bin": obj[:32].hex() + "...", "len": len(obj)}
        return {"$bin": obj.hex()}
    if isinstance(obj, msgspec.msgpack.Ext):
        inner: Any
        try:
            inner = _readable(msgspec.msgpack.decode(obj.data))
        except msgspec.DecodeError:
            inner = {"$bin": bytes(obj.data).hex()}
        return {"$ext": obj.code, "data": inner}
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, str) else k: _readable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_readable(v) for v in obj]
    return obj


def decode_frame(frame: bytes) -> Any:
    if frame == b"":
        return {"$raw": ""}
    try:
        return _readable(msgspec.msgpack.decode(frame))
    except msgspec.DecodeError:
        return {"$raw": frame.hex()}


# --------------------------------------------------------------------------- proxy


class RecordingProxy:
    """ROUTER (clients) <-> one DEALER per client (server); records every message."""

    def __init__(self, upstream: str, listen_port: int) -> None:
        self.upstream = upstream
        self.listen_port = listen_port
        self.messages: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="recording-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _record(self, direction: str, peer: int, frames: list[bytes]) -> None:
        self.messages.append(
            {
                "seq": len(self.messages),
                "t": round(time.monotonic() - self._t0, 4),
                "dir": direction,
                "peer": peer,
                "frames": [f.hex() for f in frames],
                "decoded": [decode_frame(f) for f in frames],
            }
        )

    def _run(self) -> None:
        ctx = zmq.Context()
        front = ctx.socket(zmq.ROUTER)
        front.bind(f"tcp://127.0.0.1:{self.listen_port}")
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        backs: dict[bytes, zmq.Socket] = {}
        back_to_ident: dict[zmq.Socket, bytes] = {}
        peer_index: dict[bytes, int] = {}
        self._ready.set()
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(100):
                    if sock is front:
                        ident, *frames = front.recv_multipart()
                        peer = peer_index.setdefault(ident, len(peer_index))
                        back = backs.get(ident)
                        if back is None:
                            back = ctx.socket(zmq.DEALER)
                            back.connect(self.upstream)
                            backs[ident] = back
                            back_to_ident[back] = ident
                            poller.register(back, zmq.POLLIN)
                        self._record("c2s", peer, frames)
                        back.send_multipart(frames)
                    else:
                        frames = sock.recv_multipart()
                        ident = back_to_ident[sock]
                        self._record("s2c", peer_index[ident], frames)
                        with contextlib.suppress(zmq.ZMQError):
                            front.send_multipart([ident, *frames])
        finally:
            for back in backs.values():
                back.close(linger=0)
            front.close(linger=0)
            ctx.term()


# --------------------------------------------------------------------------- server


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(QUIET_ENV)
    return env


@contextlib.contextmanager
def reference_server(venv: Path, extra: list[str]) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    port, http_port = free_port(), free_port()
    args = [
        str(venv / "bin" / "lmcache"),
        "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--http-host", "127.0.0.1", "--http-port", str(http_port),
        "--l1-size-gb", "1", "--eviction-policy", "LRU",
        *extra,
    ]  # fmt: skip
    log = open(f"/tmp/capture_wire_server_{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(args, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthcheck", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy")
            time.sleep(0.25)
        yield port, http_port, proc
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_shm(pids: set[int], names: set[str]) -> list[str]:
    """Remove /dev/shm/lmcache_* segments of the given (dead) pids, and the named ones."""
    removed = []
    for entry in Path("/dev/shm").glob("lmcache_*"):
        owner = None
        for part in entry.name.split("_"):
            if part.isdigit():
                owner = int(part)
                break
        if entry.name in names or (owner in pids and not _pid_alive(owner)):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry.name)
    return removed


# --------------------------------------------------------------------------- scenarios


class RawClient:
    """A bare DEALER that speaks the 0.5.6 framing by hand (for the probe scenario)."""

    def __init__(self, url: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.connect(url)
        self.uid = 0

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def send(self, op: int | str | bytes, *args: bytes) -> bytes:
        self.uid += 1
        b_uid = msgspec.msgpack.encode(self.uid)
        b_op = op if isinstance(op, bytes) else msgspec.msgpack.encode(op)
        self.sock.send_multipart([b_uid, b_op, *args])
        return b_uid

    def recv(self, timeout: float) -> list[bytes] | None:
        if self.sock.poll(int(timeout * 1000)):
            return list(self.sock.recv_multipart())
        return None

    def call(self, op: int | str | bytes, *args: bytes, timeout: float = 5.0) -> list[bytes] | None:
        self.send(op, *args)
        return self.recv(timeout)


def enc(obj: Any) -> bytes:
    return msgspec.msgpack.encode(obj)


def scenario_probe(url: str, notes: list[str]) -> None:
    c = RawClient(url)
    try:
        for op in (24, "noop", 21, "get_chunk_size", 32, "get_experimental"):
            c.call(op)
        c.call(22, enc(None))
        c.call("ping", enc(12345))
        c.call(9, enc("nope"))
        c.call("query_prefetch_status", enc("nope"))
        c.call(10, enc("nope"), enc(0.1))
        c.call(13, enc("probe-session"))
        c.call("end_session", enc("probe-session"))
        c.call(20, enc(False))
        c.call("clear", enc(False))
        # The reply to unregister of an unknown instance (void).
        c.call(2, enc(999999))
        c.call(15, enc(999999))
        record = {"req_id": "probe-req", "new_block_ids": [3, 4], "new_token_ids": [1, 2, 3]}
        c.call(23, enc(999999), enc("probe-model"), enc([record]))
        key = {
            "model_name": "probe-model", "world_size": 1, "worker_id": None, "token_ids": list(range(300)),
            "start": 0, "end": 256, "request_id": "probe-session", "cache_salt": "",
            "request_configs": None, "num_kv_readers": 1,
        }  # fmt: skip
        c.call("free_lookup_locks", enc(key), enc(1))
        # A lookup for a model with no registered layout still gets its 2-frame reply; the
        # prefetch result is then 0.
        c.call(8, enc(key), enc(1))
        c.call(10, enc("probe-session"), enc(2.0))
        # 0.5.6 answers none of these (section 2.6): each is followed by a 1.5 s silence.
        for op, args, why in (
            ("bogus", (), "unknown op name"),
            ("hello", (), "our extension op, unknown to 0.5.6"),
            (11, (), "retired legacy id 11"),
            (34, (), "legacy id 34 (reserved upstream for poll_kv_events)"),
            (99, (), "unknown legacy id"),
            (24, (enc(1),), "noop with one extra frame"),
            (21, (enc(1),), "get_chunk_size with one extra frame"),
            (9, (), "query_prefetch_status with a missing frame"),
            (9, (enc(5),), "query_prefetch_status with an int instead of str"),
            (22, (enc("x"),), "ping with a str instead of int|None"),
            (b"\xc1", (), "undecodable op frame (msgpack 0xc1 never used)"),
            (33, (enc(1),), "cb_protocol_handshake without --engine-type blend"),
            (1, (enc(1),), "register_kv_cache with 1 of its 7 frames"),
            (3.5, (), "op frame is a float"),
        ):
            got = c.call(op, *args, timeout=1.5)
            notes.append(f"{why}: {'no reply' if got is None else 'REPLY ' + repr(got)}")
        # The subscribe stream: initial batch (the request grants one credit), ack, cancel.
        b_uid = c.send("subscribe_kv_events", enc(4242), enc("probe-model"), enc(0), enc(16))
        first = c.recv(5)
        notes.append(f"subscribe first message: {first!r}")
        second = c.recv(1.0)
        notes.append(
            f"subscribe before ack (credit used up): {'nothing' if second is None else repr(second)}"
        )
        c.sock.send_multipart([b_uid, b"", b"ack"])
        third = c.recv(1.0)
        notes.append(f"subscribe after ack, no events: {'nothing' if third is None else repr(third)}")
        c.sock.send_multipart([b_uid, b"", b"cancel"])
        end = c.recv(5)
        notes.append(f"subscribe after cancel: {end!r}")
        c.call(24)
    finally:
        c.close()


class EventSubscriber:
    """Subscribes to KV events through the proxy while the bench runs; acks every batch."""

    def __init__(self, url: str, notes: list[str]) -> None:
        self.url = url
        self.notes = notes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kv-event-subscriber", daemon=True)

    def start(self) -> None:
        self._thread.start()
        time.sleep(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        c = RawClient(self.url)
        try:
            b_uid = c.send("subscribe_kv_events", enc(777), enc("test-model"), enc(0), enc(64))
            batches = 0
            while not self._stop.is_set():
                got = c.recv(0.2)
                if got is None:
                    continue
                batches += 1
                c.sock.send_multipart([b_uid, b"", b"ack"])
            c.sock.send_multipart([b_uid, b"", b"cancel"])
            end = c.recv(5)
            self.notes.append(f"kv event subscriber: {batches} batches, then after cancel: {end!r}")
        finally:
            c.close()


def run_bench(venv: Path, url: str, http_port: int, transfer_mode: str, end: int, num_tokens: int) -> None:
    args = [
        str(venv / "bin" / "lmcache"),
        "bench", "server",
        "--rpc-url", url,
        "--mode", "cpu",
        "--transfer-mode", transfer_mode,
        "--kvcache-shape-spec", SHAPE_SPEC,
        "--num-blocks", "64", "--block-size", "16",
        "--num-tokens", str(num_tokens),
        "--start", "0", "--end", str(end), "--interval", "0.2",
        "--url", f"http://127.0.0.1:{http_port}",
        "--format", "json",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    BENCH_PIDS.add(proc.pid)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise
    text = out.decode(errors="replace")
    Path(f"/tmp/capture_wire_bench_{transfer_mode}.log").write_text(text)
    if proc.returncode != 0:
        raise RuntimeError(f"bench exited with {proc.returncode}:\n{text[-3000:]}")


BENCH_PIDS: set[int] = set()

SCENARIOS: dict[str, dict[str, Any]] = {
    "probe": {
        "server": ["--supported-transfer-mode", "auto"],
        "about": "raw client: every simple op by legacy id and by name, the requests 0.5.6 leaves "
        "unanswered, and a subscribe_kv_events stream (first batch, ack, cancel)",
    },
    "lmcache_driven": {
        "server": ["--supported-transfer-mode", "auto"],
        "bench": ("lmcache_driven", 2, 512),
        "subscribe": True,
        "about": "lmcache bench server --mode cpu --transfer-mode lmcache_driven, 2 requests of 512 tokens "
        "(register_kv_cache with cpu_shm Ext 1 handles, store, lookup, retrieve), plus a raw "
        "subscribe_kv_events subscriber (peer 1) that acks every batch and cancels at the end",
    },
    "engine_driven_shm": {
        "server": ["--supported-transfer-mode", "auto", "--shm-name", "capture"],
        "bench": ("engine_driven", 2, 512),
        "about": "lmcache bench server --mode cpu --transfer-mode engine_driven against a server with "
        "--shm-name (SHM pool path: prepare/commit with slot descriptors, commit_store data empty)",
    },
    "engine_driven_pickle": {
        "server": ["--supported-transfer-mode", "auto"],
        "bench": ("engine_driven", 1, 256),
        "about": "lmcache bench server --mode cpu --transfer-mode engine_driven against a server "
        "without --shm-name (pickle path: commit_store.data and prepare_retrieve.data carry pickles; "
        "we never unpickle them)",
    },
}


def capture(venv: Path, name: str) -> Path:
    spec = SCENARIOS[name]
    notes: list[str] = []
    pids: set[int] = set()
    shm_names = {"lmcache_l1_pool_capture"}
    with reference_server(venv, spec["server"]) as (port, http_port, server):
        pids.add(server.pid)
        proxy = RecordingProxy(f"tcp://127.0.0.1:{port}", free_port())
        proxy.start()
        url = f"tcp://127.0.0.1:{proxy.listen_port}"
        try:
            if name == "probe":
                scenario_probe(url, notes)
            else:
                mode, end, num_tokens = spec["bench"]
                subscriber = EventSubscriber(url, notes) if spec.get("subscribe") else None
                if subscriber is not None:
                    subscriber.start()
                try:
                    run_bench(venv, url, http_port, mode, end, num_tokens)
                finally:
                    if subscriber is not None:
                        time.sleep(0.5)
                        subscriber.stop()
            time.sleep(0.5)
        finally:
            proxy.stop()
    pids |= BENCH_PIDS
    removed = cleanup_shm(pids, shm_names)
    fixture = {
        "scenario": name,
        "about": spec["about"],
        "lmcache_version": "0.5.6",
        "server_args": spec["server"],
        "kvcache_shape_spec": SHAPE_SPEC if "bench" in spec else None,
        "notes": notes,
        "format": "messages[i].frames are the ZMQ frames in hex as the client sent them (c2s, without "
        "the ROUTER identity) or as the server sent them (s2c); 'decoded' is informational only",
        "messages": proxy.messages,
    }
    FIXTURES.mkdir(parents=True, exist_ok=True)
    out = FIXTURES / f"{name}.json"
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"{name}: {len(proxy.messages)} messages -> {out} (removed shm: {removed})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        capture(args.venv, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
