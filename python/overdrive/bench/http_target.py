"""A minimal asyncio HTTP/1.1 client for :class:`~overdrive.bench.load.LoadRunner`.

No dependency beyond the standard library: requests go over asyncio streams
on keep-alive connections kept in a pool (one request per connection at a
time; a new connection opens whenever none is idle, so slow responses never
hold back new arrivals). Responses are read by ``Content-Length`` or chunked
transfer encoding, else to the end of the stream. A status >= 400 raises
:class:`HttpStatusError`, so the load runner counts it as an error by type.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError, InputTypeError

__all__ = ["HttpStatusError", "HttpTarget"]


class HttpStatusError(Exception):
    """The server answered with a status >= 400 (``status`` holds it)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpTarget:
    """An async callable that sends one HTTP request per call.

    ``HttpTarget("http://127.0.0.1:8080/path", method="GET")``; ``await
    target()`` returns the status code. Call :meth:`aclose` (on the same event
    loop) to close the pooled connections.
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if not isinstance(url, str):
            raise InputTypeError(f"url must be a str, not {type(url).__name__}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"invalid url={url!r}: must be an http:// or https:// URL with a host"
            )
        if not isinstance(method, str) or not method.isalpha():
            raise ConfigurationError(f"invalid method={method!r}: must be an HTTP method name")
        if body is not None and not isinstance(body, bytes):
            raise InputTypeError(f"body must be bytes or None, not {type(body).__name__}")
        if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
            raise ConfigurationError(f"invalid timeout_s={timeout_s!r}: must be seconds > 0")
        self.url = url
        self._host = parts.hostname
        self._ssl = parts.scheme == "https"
        self._port = parts.port or (443 if self._ssl else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        hdrs = {"Host": parts.netloc, "Connection": "keep-alive", "User-Agent": "overdrive-load"}
        hdrs.update(headers or {})
        payload = body or b""
        if payload or method.upper() in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = str(len(payload))
        head = f"{method.upper()} {path} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self._request = head.encode("latin-1") + payload
        self._timeout = float(timeout_s)
        self._idle: list[_Conn] = []
        self._open: set[asyncio.StreamWriter] = set()

    def __repr__(self) -> str:
        return f"HttpTarget({self.url!r})"

    async def _connect(self) -> _Conn:
        ctx = ssl.create_default_context() if self._ssl else None
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=ctx)
        self._open.add(writer)
        return reader, writer

    async def __call__(self) -> int:
        """Send the request once; return the status (raise on >= 400)."""
        return await asyncio.wait_for(self._send(), self._timeout)

    async def _send(self) -> int:
        conn = self._idle.pop() if self._idle else await self._connect()
        reader, writer = conn
        keep = False
        try:
            writer.write(self._request)
            await writer.drain()
            status, keep = await self._read_response(reader)
        finally:
            if keep:
                self._idle.append(conn)
            else:
                self._open.discard(writer)
                writer.close()
        if status >= 400:
            raise HttpStatusError(status)
        return status

    @staticmethod
    async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("connection closed before the status line")
        fields = line.split(None, 2)
        status = int(fields[1])
        version = fields[0]
        length: int | None = None
        chunked = False
        keep = version == b"HTTP/1.1"
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.partition(b":")
            key = name.strip().lower()
            v = value.strip().lower()
            if key == b"content-length":
                length = int(v)
            elif key == b"transfer-encoding" and b"chunked" in v:
                chunked = True
            elif key == b"connection":
                keep = v == b"keep-alive" or (keep and v != b"close")
        if chunked:
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await reader.readexactly(length)
        else:
            await reader.read()
            keep = False
        return status, keep

    async def aclose(self) -> None:
        """Close every pooled connection."""
        writers = list(self._open)
        self._open.clear()
        self._idle.clear()
        for w in writers:
            w.close()
        for w in writers:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await w.wait_closed()
