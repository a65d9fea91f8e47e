"""fastsession._portal: sync code inside a driven coroutine waits on the event loop without blocking it."""

import asyncio
import contextvars
import threading

import pytest

from fastsession import _portal
from fastsession.errors import SessionError

seen = contextvars.ContextVar("seen", default="unset")


async def doubled(x):
    await asyncio.sleep(0)
    return 2 * x


def test_a_sync_call_gets_the_awaitables_result_and_its_exception():
    async def app(loop):
        got = _portal.wait(loop, lambda: doubled(21))

        async def failing():
            await asyncio.sleep(0)
            raise KeyError("gone")

        with pytest.raises(KeyError, match="gone"):
            _portal.wait(loop, failing)
        return got, await doubled(1)  # the coroutine goes on awaiting as usual after a wait

    async def main():
        return await _portal.drive(app(asyncio.get_running_loop()), asyncio.get_running_loop())

    assert asyncio.run(main()) == (42, 2)


def test_the_coroutines_own_exception_and_return_value_come_out_of_drive():
    async def raising():
        await asyncio.sleep(0)
        raise ValueError("from the app")

    async def main():
        with pytest.raises(ValueError, match="from the app"):
            await _portal.drive(raising(), asyncio.get_running_loop())
        return await _portal.drive(doubled(5), asyncio.get_running_loop())

    assert asyncio.run(main()) == 10


def test_the_loop_runs_other_tasks_while_a_sync_call_waits():
    order = []

    async def waiter(loop, gate):
        order.append("waiting")
        _portal.wait(loop, gate.wait)  # a plain call, suspended until the gate opens
        order.append("woken")

    async def opener(gate):
        await asyncio.sleep(0.01)
        order.append("opening")  # ran while the waiter's sync call was still waiting
        gate.set()

    async def main():
        gate = asyncio.Event()
        await asyncio.gather(
            _portal.drive(waiter(asyncio.get_running_loop(), gate), asyncio.get_running_loop()), opener(gate)
        )

    asyncio.run(main())
    assert order == ["waiting", "opening", "woken"]


def test_contextvars_set_in_sync_code_are_the_tasks_own():
    async def app(loop):
        seen.set("in sync code")  # set here, inside the driver's greenlet
        _portal.wait(loop, lambda: asyncio.sleep(0))
        return seen.get()

    async def main():
        seen.set("task")
        got = await _portal.drive(app(asyncio.get_running_loop()), asyncio.get_running_loop())
        return got, seen.get()

    # Shared with the task (not a copy): what the app set is what the task sees afterwards.
    assert asyncio.run(main()) == ("in sync code", "in sync code")


def test_cancelling_the_task_cancels_the_wait_and_the_coroutine_sees_it():
    cleaned = []

    async def app(loop):
        try:
            _portal.wait(loop, lambda: asyncio.sleep(30))
        except asyncio.CancelledError:
            cleaned.append("cancelled in the sync call")
            raise

    async def main():
        task = asyncio.ensure_future(_portal.drive(app(asyncio.get_running_loop()), asyncio.get_running_loop()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cleaned == ["cancelled in the sync call"]


def test_a_worker_thread_waits_itself_and_the_loop_does_the_awaiting():
    async def main():
        loop = asyncio.get_running_loop()
        threads = []

        def in_thread():
            threads.append(threading.get_ident())
            return _portal.wait(loop, lambda: doubled(8))

        got = await asyncio.to_thread(in_thread)
        return got, threads[0] != threading.get_ident()

    assert asyncio.run(main()) == (16, True)


def test_a_task_the_driven_coroutine_spawned_cannot_wait_and_is_told_what_to_do():
    async def app(loop):
        async def spawned():
            return _portal.wait(loop, lambda: doubled(1))

        return await asyncio.create_task(spawned())

    async def main():
        await _portal.drive(app(asyncio.get_running_loop()), asyncio.get_running_loop())

    with pytest.raises(SessionError, match=r"await fastsession\.asgi\.load_session\(request\)"):
        asyncio.run(main())


def test_a_driven_coroutine_may_drive_another_and_each_waits_where_it_is():
    async def inner(loop):
        return _portal.wait(loop, lambda: doubled(3))

    async def outer(loop):
        got = await _portal.drive(inner(loop), loop)  # a middleware inside another that drives too
        return got + _portal.wait(loop, lambda: doubled(1))

    async def main():
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(_portal.drive(outer(loop), loop) for _ in range(3)))

    assert asyncio.run(main()) == [8, 8, 8]


def test_an_awaitable_that_is_not_a_coroutine_is_driven_too():
    async def main():
        future = asyncio.get_running_loop().create_future()
        future.set_result("done")
        return await _portal.drive(future, asyncio.get_running_loop())

    assert asyncio.run(main()) == "done"
