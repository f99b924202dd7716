"""Client of the server's HTTP admin API (and of an inference engine's ``/health``), for the
``lmcache`` commands and scripts. Standard library only (``urllib``), so the CLI stays light.

:class:`AdminClient` sends one request at a time with a timeout and an optional bearer token,
and turns every failure into an ``lmcache.errors`` exception with a one-line message:

* cannot connect (refused, unknown host, ...): :class:`~lmcache.errors.UnavailableError`
  (``cannot reach http://...: Connection refused (is the server running?)``);
* no answer within the timeout: :class:`~lmcache.errors.LMCacheTimeoutError`;
* an error status, or an answer that is not JSON: :class:`AdminApiError`, with the status and
  the server's own message (the ``error``, ``detail``, ``reason`` or ``message`` field).

:meth:`AdminClient.probe` is the liveness variant: it never raises for the server's answer and
reports the status and round-trip time instead.

:func:`add_server_arguments` adds the connection options every admin command shares:
``--url``, ``--timeout`` (seconds, default 5) and ``--auth-token`` (default: the
``LMCACHE_HTTP_AUTH_TOKEN`` environment variable, which keeps the token off command lines).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from lmcache.errors import LMCacheError, LMCacheTimeoutError, UnavailableError

__all__ = [
    "AUTH_TOKEN_ENV",
    "DEFAULT_SALT",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URLS",
    "AdminApiError",
    "AdminClient",
    "Probe",
    "add_server_arguments",
    "client_from_args",
    "escape_salt",
    "normalize_url",
]

DEFAULT_URLS: dict[str, str] = {
    "kvcache": "http://localhost:8080",
    "engine": "http://localhost:8000",
}
"""Default base URL per target: the lmcache server's HTTP port, and vLLM's."""

DEFAULT_TIMEOUT_S = 5.0
AUTH_TOKEN_ENV = "LMCACHE_HTTP_AUTH_TOKEN"
DEFAULT_SALT = "_default"
"""How the quota API writes the empty ``cache_salt``."""

_NO_BODY = object()
_DETAIL_KEYS = ("error", "detail", "reason", "message")


class AdminApiError(LMCacheError):
    """The server answered with an error status (``status``), or with something unreadable."""

    code = "http_error"

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def normalize_url(url: str) -> str:
    """``host:port`` or ``http(s)://host[:port][/prefix]`` -> a URL without a trailing ``/``.

    Raises ValueError for anything that is not an http(s) URL with a host.
    """
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in URL {url!r}") from exc
    if parts.query or parts.fragment:
        raise ValueError(f"URL must not have a query or fragment: {url!r}")
    return text.rstrip("/")


def escape_salt(salt: str) -> str:
    """A ``cache_salt`` as a quota path segment: ``""`` -> ``_default``, the rest percent-encoded."""
    return urllib.parse.quote(salt, safe="") if salt else DEFAULT_SALT


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _detail(raw: bytes) -> tuple[Any, str]:
    """The decoded body and the server's message in it (or the body text itself)."""
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text, _one_line(text)
    if isinstance(body, dict):
        for key in _DETAIL_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value:
                return body, _one_line(value)
            if isinstance(value, list) and value:  # FastAPI's validation details
                return body, _one_line(
                    "; ".join(str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value)
                )
    return body, _one_line(text)


def _is_timeout(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", None)
    return isinstance(exc, (TimeoutError, socket.timeout)) or isinstance(
        reason, (TimeoutError, socket.timeout)
    )


@dataclass(frozen=True)
class Probe:
    """The outcome of :meth:`AdminClient.probe`: ``status`` is None when nothing answered."""

    url: str
    status: int | None
    rtt_ms: float
    error: str | None
    body: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200


class AdminClient:
    """Requests to one server: ``AdminClient("http://localhost:8080").request("GET", "/status")``."""

    def __init__(
        self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT_S, token: str | None = None
    ) -> None:
        self.base_url = normalize_url(base_url)
        self.timeout = timeout
        self.token = token or None

    def _request(self, method: str, path: str, body: Any) -> urllib.request.Request:
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body is not _NO_BODY:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)

    def _unreachable(self, url: str, exc: BaseException) -> LMCacheError:
        if _is_timeout(exc):
            return LMCacheTimeoutError(f"{url}: no answer within {self.timeout:g} s")
        reason = getattr(exc, "reason", None) or exc
        text = getattr(reason, "strerror", None) or str(reason)
        return UnavailableError(f"cannot reach {url}: {_one_line(text)} (is the server running?)")

    def request(self, method: str, path: str, body: Any = _NO_BODY) -> Any:
        """Send one request; return the decoded JSON answer of a 2xx status."""
        req = self._request(method, path, body)
        url = req.full_url
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            decoded, detail = _detail(exc.read() if exc.fp is not None else b"")
            hint = f" (set {AUTH_TOKEN_ENV} or pass --auth-token)" if exc.code == 401 else ""
            raise AdminApiError(
                f"{method} {url}: HTTP {exc.code}: {detail or exc.reason}{hint}",
                status=exc.code,
                body=decoded,
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(url, exc) from exc
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise AdminApiError(f"{method} {url}: the answer is not JSON", status=200, body=raw) from exc

    def probe(self, path: str) -> Probe:
        """GET ``path``; report the status and round-trip time instead of raising for it."""
        req = self._request("GET", path, _NO_BODY)
        url = req.full_url
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            rtt = (time.perf_counter() - start) * 1000
            decoded, detail = _detail(exc.read() if exc.fp is not None else b"")
            return Probe(url, exc.code, rtt, f"{url}: HTTP {exc.code}: {detail or exc.reason}", decoded)
        except (urllib.error.URLError, OSError) as exc:
            rtt = (time.perf_counter() - start) * 1000
            return Probe(url, None, rtt, str(self._unreachable(url, exc)))
        rtt = (time.perf_counter() - start) * 1000
        decoded, _ = _detail(raw)
        error = None if status == 200 else f"{url}: HTTP {status}"
        return Probe(url, status, rtt, error, decoded)


def _url_arg(text: str) -> str:
    try:
        return normalize_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _timeout_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_server_arguments(
    parser: argparse.ArgumentParser, *, default_url: str | None, url_help: str | None = None
) -> None:
    """Add ``--url`` (default ``default_url``), ``--timeout`` and ``--auth-token`` to a command."""
    group = parser.add_argument_group("server")
    if url_help is None:
        url_help = f"URL of the lmcache server's HTTP API (default: {default_url})."
    group.add_argument("--url", type=_url_arg, default=default_url, help=url_help)
    group.add_argument(
        "--timeout",
        type=_timeout_arg,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="How long to wait for an answer. Default: %(default)s.",
    )
    group.add_argument(
        "--auth-token",
        default=None,
        metavar="TOKEN",
        help=f"Bearer token of a server started with --http-auth-token. Default: ${AUTH_TOKEN_ENV}.",
    )


def client_from_args(args: argparse.Namespace, default_url: str) -> AdminClient:
    """An :class:`AdminClient` for the options :func:`add_server_arguments` added."""
    token = args.auth_token if args.auth_token is not None else os.environ.get(AUTH_TOKEN_ENV)
    return AdminClient(args.url or default_url, timeout=args.timeout, token=token)
