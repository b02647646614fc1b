"""examples/inference_service.py: the service answers over loopback HTTP with
what the MLP computes directly, its /metrics page parses with Prometheus' own
parser, bad requests get 4xx, and the script runs from the command line."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inference_service.py"


def _load() -> Any:
    name = "overdrive_example_inference_service"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


ex = _load()

TEXTS = [
    "hello world",
    "Hello   world",
    "the quick brown fox",
    "",
    "naïve café ünïcode",
    "hello world",
    "a much longer text " * 20,
]


def _post(port: int, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/embed",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


def test_mlp_is_deterministic_and_normalised() -> None:
    a, b = ex.EmbeddingMLP(), ex.EmbeddingMLP()
    va, vb = a(TEXTS), b(TEXTS)
    assert all(np.array_equal(x, y) for x, y in zip(va, vb, strict=True))
    norms = [float(np.linalg.norm(v)) for v in va]
    assert all(abs(n - 1.0) < 1e-5 for n in norms)
    assert all(v.dtype == np.float32 and v.shape == (128,) for v in va)
    # different texts, different vectors
    assert float(va[0] @ va[2]) < 0.99


def test_service_over_http_equals_the_model() -> None:
    direct = ex.EmbeddingMLP()(TEXTS)

    async def main() -> None:
        service = ex.build_app(replicas=2)
        port = await service.start("127.0.0.1", 0)
        server = asyncio.create_task(service.serve_forever())
        try:
            body = json.dumps({"texts": TEXTS}).encode()
            # concurrent requests (they batch in the pool), then repeats (cache hits)
            answers = await asyncio.gather(
                *(asyncio.to_thread(_post, port, body) for _ in range(6))
            )
            answers.append(await asyncio.to_thread(_post, port, body))
            for status, doc in answers:
                assert status == 200
                assert doc["dim"] == 128 and doc["model"] == ex.MODEL_ID
                got = np.asarray(doc["embeddings"], dtype=np.float32)
                assert got.shape == (len(TEXTS), 128)
                # float32 round-tripped through JSON; batch sizes may change BLAS rounding
                np.testing.assert_allclose(got, np.stack(direct), rtol=0, atol=1e-6)
            stats = service.stats()
            assert stats["requests"] == 7
            assert stats["cache_hits"] > 0

            status, text = await asyncio.to_thread(_get, port, "/metrics")
            assert status == 200
            families = {f.name: f for f in text_string_to_metric_families(text)}
            items = families["overdrive_inference_pool_items"]
            assert any(s.labels["name"] == "embedder" and s.value > 0 for s in items.samples)
            assert "overdrive_inference_pool_replica_batches" in families
            assert any(name.startswith("overdrive_embedding_cache") for name in families)

            status, doc = await asyncio.to_thread(_post, port, b'{"texts": [1, 2]}')
            assert status == 400 and "error" in doc
            status, doc = await asyncio.to_thread(_post, port, b"not json")
            assert status == 400
            status, _ = await asyncio.to_thread(_get, port, "/nope")
            assert status == 404
            status, _ = await asyncio.to_thread(_get, port, "/embed")
            assert status == 405
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
            await service.aclose()
        assert service.pool.closed

    asyncio.run(main())


def test_service_without_cache_calls_the_pool_for_every_text() -> None:
    async def main() -> dict[str, Any]:
        service = ex.Service(replicas=1, cache=False)
        try:
            out = await service.embed(["x", "x", "y"])
            assert len(out) == 3
            np.testing.assert_allclose(out[0], out[1])
            return dict(service.pool.stats())
        finally:
            await service.aclose()

    assert asyncio.run(main())["items"] == 3


def test_script_runs_from_the_command_line() -> None:
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0", "--replicas", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        port = int(line.split(":")[2].split(" ")[0])
        status, doc = _post(port, json.dumps({"texts": ["hello world"]}).encode())
        assert status == 200
        direct = ex.EmbeddingMLP()(["hello world"])[0]
        np.testing.assert_allclose(np.asarray(doc["embeddings"][0]), direct, atol=1e-6)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_ai_bench_suite_pieces() -> None:
    from overdrive.bench import SUITES
    from overdrive.bench.suites import ai as suite

    assert SUITES["ai"] == "overdrive.bench.suites.ai"
    assert suite.example_module() is not None
    texts = suite.zipf_texts(5000, n_texts=300)
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    top = sorted(counts.values(), reverse=True)
    assert top[0] > 10 * top[len(top) // 2]  # a heavy head, a long tail
    # A tiny before/after run: every request answered on both sides.
    before, after, hit_ratio = suite._case(ex, texts[:200], 200.0, 0.5, 2)
    assert before.completed == after.completed == 100
    assert before.errors == after.errors == 0
    assert before.timed.calls == 100
    assert after.timed.calls < 100  # batched and cached
    assert 0.0 < hit_ratio < 1.0
