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


def _need_program(program: str, package: str) -> None:
    """Fail (never skip) when a program the Redis tests run is missing: `make test`
    installs it through scripts/system-deps.sh, so a missing one is a broken setup."""
    if shutil.which(program) is None:
        pytest.fail(
            f"{program} is not installed (Debian package {package}): run `make test` "
            "or scripts/system-deps.sh"
        )


def _need_redis_server() -> None:
    _need_program("redis-server", "redis-server")


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
    _need_program("redis-cli", "redis-tools")
    from overdrive.bench.redis_server import RedisCluster3

    cluster = RedisCluster3()
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()
