"""An embedding service: a numpy MLP behind an InferencePool and an embedding cache.

Everything ships with this file (no downloads): :class:`EmbeddingMLP` turns
texts into unit vectors (hashed character 3-gram features -> dense 4096x512
ReLU -> dense 512x128 -> L2 normalisation; fixed-seed weights). The
:class:`Service` puts it behind

- ``overdrive.ai.InferencePool`` (two replicas, each behind its own Batcher:
  concurrent requests become one matrix product),
- ``overdrive.ai.EmbeddingCache`` (float32 vectors in a MemoryTier, keyed by
  model id and normalised text): repeated texts cost no model call,
- ``overdrive.telemetry`` (``GET /metrics`` in Prometheus text format),

and serves it over HTTP/1.1 on 127.0.0.1 with nothing but asyncio streams::

    python examples/inference_service.py --port 8080
    curl -s localhost:8080/embed -d '{"texts": ["hello world", "hi"]}'
    curl -s localhost:8080/metrics | grep overdrive_inference_pool

``POST /embed`` takes ``{"texts": [...]}`` and answers ``{"model": ...,
"dim": 128, "embeddings": [[...], ...]}``. The test suite and ``overdrive
bench --suite ai`` import :func:`build_app` / :class:`Service`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import unicodedata
import zlib
from collections.abc import Sequence
from typing import Any

from overdrive import ai, telemetry
from overdrive.cache import MemoryTier

# A request-parallel service: parallelism comes from replicas and batching,
# one BLAS thread per model call (set before numpy loads; an explicit
# setting in the environment wins).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    if "numpy" not in sys.modules:
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

__all__ = ["EmbeddingMLP", "Service", "build_app", "main", "serve"]

MODEL_ID = "overdrive-example-mlp-v1"


class EmbeddingMLP:
    """A small deterministic text-embedding model in numpy.

    ``model(texts) -> list[np.ndarray]`` (float32 unit vectors of ``dim_out``).
    Features: each character 3-gram of the normalised text (NFKC, lower case,
    padded with spaces) is hashed (CRC-32) into one of ``dim_in`` buckets,
    counted and L2-normalised. Two dense layers with fixed-seed weights follow.
    A call costs one matrix product, so a batch of 64 texts costs far less
    than 64 calls of one (the weights are read once).
    """

    def __init__(
        self, dim_in: int = 4096, hidden: int = 512, dim_out: int = 128, seed: int = 0
    ) -> None:
        rng = np.random.default_rng(seed)
        self.dim_in, self.hidden, self.dim_out = dim_in, hidden, dim_out
        self.w1 = (rng.standard_normal((dim_in, hidden)) / np.sqrt(dim_in)).astype(np.float32)
        self.b1 = (rng.standard_normal(hidden) * 0.01).astype(np.float32)
        self.w2 = (rng.standard_normal((hidden, dim_out)) / np.sqrt(hidden)).astype(np.float32)
        self.calls = 0
        self.items = 0

    @staticmethod
    def normalise(text: str) -> str:
        """The text the model sees: NFKC, lower case, single spaces."""
        return " ".join(unicodedata.normalize("NFKC", text).lower().split())

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim_in)`` float32 hashed 3-gram counts, L2-normalised rows."""
        x = np.zeros((len(texts), self.dim_in), dtype=np.float32)
        mask = self.dim_in - 1 if self.dim_in & (self.dim_in - 1) == 0 else None
        for row, text in enumerate(texts):
            b = (" " + self.normalise(text) + " ").encode()
            if mask is not None:
                idx = [zlib.crc32(b[i : i + 3]) & mask for i in range(len(b) - 2)]
            else:
                idx = [zlib.crc32(b[i : i + 3]) % self.dim_in for i in range(len(b) - 2)]
            np.add.at(x[row], idx, 1.0)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        np.divide(x, norms, out=x, where=norms > 0)
        return x

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Embed ``texts``: one float32 unit vector each, in order."""
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be str, not {type(t).__name__}")
        self.calls += 1
        self.items += len(texts)
        h = np.maximum(self.features(texts) @ self.w1 + self.b1, 0.0)
        y = h @ self.w2
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        y = np.divide(y, norms, out=y, where=norms > 0).astype(np.float32, copy=False)
        return list(y)


class Service:
    """The embedding service: the model behind an InferencePool (``replicas``
    copies, each behind its own Batcher) and an embedding cache (``cache=False``:
    none). :meth:`embed` is the whole request path; :meth:`start` serves it
    over HTTP on ``host:port`` (0: any free port; :attr:`port` says which)."""

    def __init__(
        self,
        *,
        replicas: int = 2,
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        cache: bool = True,
        cache_entries: int = 100_000,
        model: EmbeddingMLP | None = None,
    ) -> None:
        self.model = model if model is not None else EmbeddingMLP()
        self.pool: ai.InferencePool[str, np.ndarray] = ai.InferencePool(
            [self.model] * replicas,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            name="embedder",
        )
        self.cache_kind = "none"
        self.ecache: Any = None
        self._tier: MemoryTier | None = None
        if cache:
            # Vectors as float32 bytes in a MemoryTier; a batch looks every text
            # up at once and sends only the misses to the pool.
            self._tier = MemoryTier(max_entries=cache_entries, name="embedder-vectors")
            self.ecache = ai.EmbeddingCache(
                self._compute, model_id=MODEL_ID, cache=self._tier, name="embedder"
            )
            self.cache_kind = "overdrive.ai.EmbeddingCache(MemoryTier)"
        self.requests = 0
        self.texts = 0
        self.latency = telemetry.LatencyHistogram("embed_request")
        self._server: asyncio.Server | None = None
        self.port = 0
        telemetry.register(self, component="inference_service", name="embedder")

    async def _compute(self, texts: list[str]) -> list[np.ndarray]:
        return await self.pool.apredict_many(texts)

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Embeddings of ``texts`` (in order): cache first, the pool for misses."""
        start = time.perf_counter()
        texts = list(texts)
        if self.ecache is not None:
            out = list(await self.ecache.aembed_many(texts))
        else:
            out = await self._compute(texts)
        self.requests += 1
        self.texts += len(texts)
        self.latency.record(time.perf_counter() - start)
        return out

    def stats(self) -> dict[str, Any]:
        """Requests, texts, cache hits/misses, model calls and request latency."""
        s: dict[str, Any] = {
            "requests": self.requests,
            "texts": self.texts,
            "model_calls": self.model.calls,
            "model_items": self.model.items,
            "latency_p50_s": self.latency.percentile(50.0),
            "latency_p99_s": self.latency.percentile(99.0),
        }
        if self.ecache is not None:
            c = self.ecache.stats()
            s["cache_hits"] = int(c.get("hits", 0))
            s["cache_misses"] = int(c.get("misses", 0))
        return s

    # --- HTTP ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start serving; returns the port."""
        self._server = await asyncio.start_server(self._client, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def aclose(self) -> None:
        """Stop the server and drain the pool."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self.pool.aclose()
        if self._tier is not None:
            self._tier.close()

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition of every overdrive component."""
        import prometheus_client as pc

        registry = pc.CollectorRegistry()
        telemetry.install(registry)
        return bytes(pc.generate_latest(registry))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                try:
                    method, path, _version = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    await self._send(writer, 400, b'{"error": "bad request line"}', close=True)
                    return
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                close = headers.get("connection", "").lower() == "close"
                status, payload, ctype = await self._route(method, path, body)
                await self._send(writer, status, payload, ctype=ctype, close=close)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        js = "application/json"
        path = path.split("?", 1)[0]
        if path == "/metrics" and method == "GET":
            return 200, self.metrics_text(), "text/plain; version=0.0.4; charset=utf-8"
        if path == "/embed" and method == "POST":
            try:
                doc = json.loads(body)
                texts = doc["texts"]
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return 400, b'{"error": "body must be {\\"texts\\": [str, ...]}"}', js
            vecs = await self.embed(texts)
            out = {
                "model": MODEL_ID,
                "dim": self.model.dim_out,
                "embeddings": [v.tolist() for v in vecs],
            }
            return 200, json.dumps(out).encode(), js
        if path in ("/embed", "/metrics"):
            return 405, b'{"error": "method not allowed"}', js
        return 404, b'{"error": "not found"}', js

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        *,
        ctype: str = "application/json",
        close: bool = False,
    ) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        head = (
            f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + payload)
        await writer.drain()


def build_app(**kwargs: Any) -> Service:
    """A :class:`Service` (keyword arguments as its constructor's)."""
    return Service(**kwargs)


async def serve(port: int = 0, host: str = "127.0.0.1", **kwargs: Any) -> None:
    """Run the service until cancelled (prints the URL once listening)."""
    service = build_app(**kwargs)
    bound = await service.start(host, port)
    print(f"serving on http://{host}:{bound} (POST /embed, GET /metrics)", flush=True)
    try:
        await service.serve_forever()
    finally:
        await service.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--port`` (0: any free port), ``--replicas``, ``--no-cache``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--no-cache", action="store_true")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.host, replicas=args.replicas, cache=not args.no_cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
