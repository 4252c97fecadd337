"""The brake on guessing passwords: failed sign-ins lock an account or an address, in every server process at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from quart import Quart
from sqlalchemy import select, update

from server.app import create_app
from server.state import get_state
from server.store.models import SignInFailure, utcnow
from tests.conftest import PASSWORD, make_settings, register

EMAIL = "ann@school.test"
WRONG = "not the password"


async def login(client, email: str = EMAIL, password: str = WRONG, address: str | None = None):
    scope = {"client": (address, 50000)} if address else None
    return await client.post("/api/auth/login", json={"email": email, "password": password}, scope_base=scope)


async def signed_up(client) -> None:
    await register(client)
    await client.post("/api/auth/logout")


async def fail(client, times: int, **kwargs) -> None:
    for _ in range(times):
        response = await login(client, **kwargs)
        assert response.status_code == 401, await response.get_data(as_text=True)


@pytest.fixture
async def strict_app(tmp_path: Path, database_url: str) -> AsyncIterator[Quart]:
    """Two failures lock an account and three an address, so a test needs few (slow, hashed) attempts."""
    env = {"AUTH__THROTTLE__ACCOUNT_FAILURES": "2", "AUTH__THROTTLE__ADDRESS_FAILURES": "3"}
    if database_url:
        env["DATABASE__URL"] = database_url
    app = create_app(make_settings(tmp_path, **env))
    async with app.test_app():
        yield app


async def test_the_sixth_wrong_password_is_refused_with_a_time_to_wait(client):
    await signed_up(client)
    await fail(client, 5)

    locked = await login(client)
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 30
    error = (await locked.get_json())["error"]
    assert error["code"] == "too_many_attempts"
    assert "Try again in 30 seconds" in error["message"]
    # The right password is refused too while the lock lasts.
    right = await login(client, password=PASSWORD)
    assert right.status_code == 429
    assert "Retry-After" in right.headers


async def test_the_lock_is_shared_by_every_server_process(app, settings, client):
    await signed_up(client)
    await fail(client, 5)
    other = create_app(settings)
    async with other.test_app():
        refused = await login(other.test_client(), password=PASSWORD)
    assert refused.status_code == 429


async def test_each_lock_after_the_first_lasts_twice_as_long(strict_app):
    client = strict_app.test_client()
    await signed_up(client)
    await fail(client, 2)
    db = get_state(strict_app).db

    async def lock_ends_now() -> None:
        async with db.write() as session:
            await session.execute(update(SignInFailure).values(locked_until=utcnow() - timedelta(seconds=1)))

    await lock_ends_now()
    # The lock has run out: the next wrong password is answered, and locks again for longer.
    assert (await login(client)).status_code == 401
    second = await login(client)
    assert second.status_code == 429
    assert 30 < int(second.headers["Retry-After"]) <= 60
    assert "1 minute" in (await second.get_json())["error"]["message"]

    await lock_ends_now()
    assert (await login(client, password=PASSWORD)).status_code == 200
    # The right password cleared the account's count: a fresh start before the next lock.
    await client.post("/api/auth/logout")
    await fail(client, 1, address="198.51.100.2")


async def test_a_success_resets_the_account_count(strict_app):
    client = strict_app.test_client()
    await signed_up(client)
    await fail(client, 1)
    assert (await login(client, password=PASSWORD)).status_code == 200
    await client.post("/api/auth/logout")
    await fail(client, 1, address="198.51.100.2")
    assert (await login(client, password=PASSWORD)).status_code == 200


async def test_unknown_emails_are_locked_the_same_way(strict_app):
    client = strict_app.test_client()
    await fail(client, 2, email="nobody@school.test")
    assert (await login(client, email="nobody@school.test")).status_code == 429


async def test_one_address_guessing_across_many_emails_is_locked(strict_app):
    client = strict_app.test_client()
    await signed_up(client)
    # One try per email, so no account's own count gets near its limit.
    for n in range(3):
        response = await login(client, email=f"guess{n}@school.test", address="203.0.113.7")
        assert response.status_code == 401
    locked = await login(client, email="guess9@school.test", address="203.0.113.7")
    assert locked.status_code == 429
    # Even Ann's right password, from that address; from another address she signs in.
    assert (await login(client, password=PASSWORD, address="203.0.113.7")).status_code == 429
    assert (await login(client, password=PASSWORD, address="198.51.100.2")).status_code == 200


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path):
    env = {
        "AUTH__THROTTLE__ADDRESS_FAILURES": "2",
        "AUTH__THROTTLE__ACCOUNT_FAILURES": "100",
        "AUTH__TRUSTED_PROXIES": '["10.0.0.1"]',
    }
    app = create_app(make_settings(tmp_path, **env))
    async with app.test_app():
        client = app.test_client()

        async def via(address: str, forwarded: str):
            return await client.post(
                "/api/auth/login",
                json={"email": "x@school.test", "password": WRONG},
                headers={"X-Forwarded-For": forwarded},
                scope_base={"client": (address, 50000)},
            )

        # Through the trusted proxy, each learner's own address counts.
        assert (await via("10.0.0.1", "192.0.2.1")).status_code == 401
        assert (await via("10.0.0.1", "192.0.2.2")).status_code == 401
        # A client writing the header itself is still its own address.
        assert (await via("198.51.100.9", "192.0.2.3")).status_code == 401
        assert (await via("198.51.100.9", "192.0.2.4")).status_code == 401
        assert (await via("198.51.100.9", "192.0.2.5")).status_code == 429
        async with get_state(app).db.read() as session:
            keys = set((await session.execute(select(SignInFailure.key))).scalars())
    assert {"ip:192.0.2.1", "ip:192.0.2.2", "ip:198.51.100.9"} <= keys
    assert "ip:192.0.2.3" not in keys


async def test_concurrent_failures_are_all_counted(tmp_path: Path, database_url: str):
    env = {"AUTH__THROTTLE__ACCOUNT_FAILURES": "100"}
    if database_url:
        env["DATABASE__URL"] = database_url
    app = create_app(make_settings(tmp_path, **env))
    async with app.test_app():
        client = app.test_client()
        responses = await asyncio.gather(*(login(client) for _ in range(8)))
        assert [r.status_code for r in responses] == [401] * 8
        async with get_state(app).db.read() as session:
            row = await session.get(SignInFailure, f"email:{EMAIL}")
    assert row is not None and row.failures == 8
