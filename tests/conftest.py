"""Shared pytest configuration: hypothesis profiles and helpers."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --- Redis: a real redis-server on a free local port ---------------------------------

import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from overdrive.bench.redis_server import RedisServer  # noqa: E402


def _need_redis_server() -> None:
    """Skip when redis-server is missing, unless CI is set (then fail the run)."""
    if shutil.which("redis-server") is None:
        msg = "redis-server is not installed (run scripts/system-deps.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def redis_server_proc() -> Iterator[RedisServer]:
    """The session's RedisServer (``.url``, ``.port``, ``.kill()``, ``.start()``)."""
    _need_redis_server()
    srv = RedisServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def redis_server(redis_server_proc: RedisServer) -> str:
    """URL of a redis-server started for this session (``redis://127.0.0.1:PORT/0``)."""
    return redis_server_proc.url


@pytest.fixture
def redis_restart(redis_server_proc: RedisServer) -> Iterator[RedisServer]:
    """Kill / restart the session server on the same port (``.kill()``,
    ``.start()``, ``.pause()``, ``.resume()``); it runs again after the test
    whatever the test did."""
    try:
        yield redis_server_proc
    finally:
        redis_server_proc.resume()
        redis_server_proc.start()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone."""
    _need_redis_server()
    srv = RedisServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[str]:
    """``redis+cluster://`` URL of a 3-master Redis Cluster started for this session."""
    _need_redis_server()
    if shutil.which("redis-cli") is None:
        msg = "redis-cli is not installed (Debian package redis-tools)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from overdrive.bench.redis_server import RedisCluster3

    cluster = RedisCluster3()
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()
