"""Deterministic, realistic message corpora for benchmarks and tests.

JSON event messages of the kind services and agent swarms exchange: ids,
timestamps, enums, nested metadata and free text, generated from a seed so
every run (and every machine) compresses the same bytes.
"""

from __future__ import annotations

import json
import random

__all__ = ["json_blob", "json_message", "json_messages"]

_WORDS = [
    "the",
    "model",
    "returned",
    "a",
    "response",
    "with",
    "tokens",
    "latency",
    "cache",
    "hit",
    "miss",
    "user",
    "agent",
    "request",
    "session",
    "batch",
    "queue",
    "worker",
    "replica",
    "shard",
    "embedding",
    "prompt",
    "completion",
    "error",
    "retry",
    "timeout",
    "upstream",
    "downstream",
    "payload",
    "gpu",
    "cpu",
    "memory",
    "throughput",
    "score",
    "ranking",
    "vector",
    "index",
    "document",
    "query",
    "result",
    "status",
    "ok",
    "failed",
    "pending",
    "accepted",
    "rejected",
]
_EVENTS = ("click", "view", "purchase", "search", "signup", "logout", "inference", "tool_call")
_REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-south-1")
_AGENTS = ("planner", "retriever", "critic", "executor", "router")


def json_message(rng: random.Random, size: int) -> bytes:
    """One valid JSON message of about ``size`` bytes (longer only when ``size`` is
    below the ~200-byte skeleton)."""
    msg: dict[str, object] = {
        "id": f"{rng.getrandbits(64):016x}",
        "ts": 1_760_000_000 + rng.randrange(10_000_000),
        "event": rng.choice(_EVENTS),
        "user": f"user-{rng.randrange(100_000)}",
        "agent": rng.choice(_AGENTS),
        "region": rng.choice(_REGIONS),
        "score": round(rng.random(), 4),
        "meta": {"v": 2, "retries": rng.randrange(4), "ok": rng.random() > 0.1},
        "text": "",
    }
    base = len(json.dumps(msg, separators=(",", ":")))
    words: list[str] = []
    length = 0
    while base + length < size:
        w = rng.choice(_WORDS)
        words.append(w)
        length += len(w) + 1
    msg["text"] = " ".join(words)
    data = json.dumps(msg, separators=(",", ":")).encode()
    while len(data) > size and words:
        words.pop()
        msg["text"] = " ".join(words)
        data = json.dumps(msg, separators=(",", ":")).encode()
    return data


def json_messages(n: int, size: int, seed: int = 42) -> list[bytes]:
    """``n`` JSON messages of about ``size`` bytes each."""
    rng = random.Random(seed)
    return [json_message(rng, size) for _ in range(n)]


def json_blob(total: int, seed: int = 42) -> bytes:
    """JSON lines of ~1 KiB messages, exactly ``total`` bytes long."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    length = 0
    while length < total:
        m = json_message(rng, rng.randrange(200, 2000)) + b"\n"
        parts.append(m)
        length += len(m)
    return b"".join(parts)[:total]
