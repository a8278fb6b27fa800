"""A replica's image budget: requests hold their images' tokens first come first served, one larger than the whole
budget runs alone, and a request cancelled while waiting holds nothing and holds no one back."""

import asyncio

import pytest

from serve.image_budget import ImageBudget


def test_requests_hold_the_budget_in_turn_and_a_larger_one_runs_alone():
    async def scenario():
        budget, order = ImageBudget(100), []

        async def request(name: str, tokens: int, seconds: float):
            waited = await budget.acquire(tokens)
            order.append((name, waited, budget.held))
            await asyncio.sleep(seconds)
            budget.release(tokens)

        await asyncio.gather(
            request("a", 60, 0.05),
            request("b", 60, 0.01),  # waits for a
            request("c", 30, 0.01),  # would fit beside a, but b came first
            request("big", 250, 0.01),  # over the whole budget: alone, after b and c
            request("d", 10, 0.01),
        )
        return order, budget.held

    order, held = asyncio.run(scenario())
    assert [name for name, _, _ in order] == ["a", "b", "c", "big", "d"]
    assert [waited for _, waited, _ in order] == [False, True, True, True, True]
    assert ("big", True, 250) in order and held == 0  # alone: nothing else held beside it; all given back


def test_a_request_cancelled_while_waiting_holds_nothing_and_lets_the_next_go():
    async def scenario():
        budget = ImageBudget(100)
        assert await budget.acquire(80) is False
        blocked = asyncio.create_task(budget.acquire(90))  # waits for the 80
        small = asyncio.create_task(budget.acquire(20))  # fits beside the 80, but queued behind the 90
        await asyncio.sleep(0.01)
        assert not small.done()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(blocked, 0.01)  # its deadline passes
        await asyncio.sleep(0)
        assert small.done() and budget.held == 100  # the 20 went as soon as the 90 gave up its turn
        budget.release(80)
        budget.release(20)
        return budget.held

    assert asyncio.run(scenario()) == 0
