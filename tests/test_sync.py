"""run_coroutine: the one way sync code runs a coroutine, with and without a running event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from workbench.sync import run_coroutine


async def where_am_i() -> str:
    await asyncio.sleep(0)  # really suspends: needs a loop
    return threading.current_thread().name


def test_without_a_running_loop_it_runs_in_the_calling_thread():
    assert run_coroutine(where_am_i()) == threading.current_thread().name


def test_inside_a_running_loop_it_runs_in_a_named_worker_thread():
    # A Jupyter cell: a loop already runs in this thread, where asyncio.run would raise.
    async def cell() -> str:
        return run_coroutine(where_am_i(), thread_name="test-worker")

    assert asyncio.run(cell()) == "test-worker"


class Boom(Exception):
    pass


async def fails() -> None:
    await asyncio.sleep(0)
    raise Boom("from the coroutine")


def test_the_coroutines_exception_reaches_the_caller_without_a_loop():
    with pytest.raises(Boom, match="from the coroutine"):
        run_coroutine(fails())


def test_the_coroutines_exception_reaches_the_caller_inside_a_loop():
    async def cell() -> None:
        run_coroutine(fails())

    with pytest.raises(Boom, match="from the coroutine"):
        asyncio.run(cell())
