"""The project's connection pool (activities/db.py) on a real PostgreSQL: a released connection costs
no reset round trip, and a transaction left open is still rolled back before anyone else gets it."""

from __future__ import annotations

import asyncpg

from activities.db import create_pool


async def test_a_released_connection_sends_no_reset_query(empty_database_url: str):
    pool = await create_pool(empty_database_url, max_size=1)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: sent.append(record.query))
            await conn.execute("SELECT 1")
        async with pool.acquire() as again:  # max_size=1: the same connection
            await again.execute("SELECT 2")
    finally:
        await pool.close()
    assert sent == ["SELECT 1", "SELECT 2"], "nothing between the two: no RESET ALL, no UNLISTEN *"


async def test_a_transaction_left_open_is_rolled_back_before_the_connection_is_reused(empty_database_url: str):
    pool = await create_pool(empty_database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE kept (n int)")
        conn = await pool.acquire()
        left_open = conn.transaction()
        await left_open.start()
        await conn.execute("INSERT INTO kept VALUES (1)")
        await pool.release(conn)  # never committed
        async with pool.acquire() as again:
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM kept") == 0
    finally:
        await pool.close()


async def test_a_plain_asyncpg_pool_would_have_sent_the_reset_query(empty_database_url: str):
    """The counterpart of the first test: asyncpg's own default sends one on every release."""
    pool = await asyncpg.create_pool(empty_database_url, min_size=1, max_size=1)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: sent.append(record.query))
            await conn.execute("SELECT 1")
    finally:
        await pool.close()
    assert len(sent) == 2 and "RESET ALL" in sent[1]
