"""`backend: ray` with a `budget`: one guard for the whole cluster.

The sweep's `BudgetGuard` (runner.budget) moves into one Ray actor, the `Ledger`, for the length of the run:
every worker's executor and the driver's judge ask it before each call, so admissions are serialised in one
place and the caps hold across workers exactly as on a laptop (a call in flight keeps its worst case reserved
until it is settled; nothing past a cap is ever started). The driver copies the ledger's counts back into its
own guard at the end, so the stop reason, the parent's tags, `budget.*` metrics and the CLI's exit code are
the local backend's.

Workers await the ledger (`admit`, `settle`) so their event loop stays free; a cell is returned to the driver
only after its call was settled, so the driver's copy is exact once the cells are in. The judge's meter is
synchronous (it runs on the judge's own loop thread on the driver) and blocks that thread for one round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from workbench.rag.chat import Generation
from workbench.runner.budget import BudgetGuard, Ticket
from workbench.spec import ModelConfig


@dataclass(frozen=True)
class Usage:
    """What a settled call used: all the guard reads of a Generation or a judge reply (small on the wire)."""

    prompt_tokens: int | None
    completion_tokens: int | None


def usage_of(gen: Generation | Any | None) -> Usage | None:
    if gen is None:
        return None
    return Usage(getattr(gen, "prompt_tokens", None), getattr(gen, "completion_tokens", None))


class Ledger:
    """The cluster's one `BudgetGuard`, run as a Ray actor (`ray.remote(Ledger)` in `SharedBudget.start`)."""

    def __init__(self, guard: BudgetGuard, elapsed_s: float):
        guard.started = time.perf_counter() - elapsed_s  # max_wall_s: this run's seconds, on this process's clock
        guard.on_stop = None  # the driver is told by `state` (and by each refused call)
        self.guard = guard

    def admit(self, model: ModelConfig, messages: list[dict]) -> tuple[Ticket | None, str | None]:
        ticket = self.guard.admit(model, messages)
        return ticket, (self.guard.stopped if ticket is None else None)

    def settle(self, ticket: Ticket, usage: Usage | None) -> float:
        return self.guard.settle(ticket, usage)

    def state(self) -> dict[str, Any]:
        g = self.guard
        return {"calls": g.calls, "usd": g.usd, "stopped": g.stopped, "latencies": list(g.latencies)}


class WorkerGuard:
    """A worker executor's guard: awaits the ledger (runner `Executor.generate` awaits admit and settle)."""

    def __init__(self, ledger: Any):
        self.ledger = ledger

    async def admit(self, model: ModelConfig, messages: list[dict]) -> Ticket | None:
        ticket, _ = await self.ledger.admit.remote(model, messages)
        return ticket

    async def settle(self, ticket: Ticket, gen: Generation | None) -> float:
        return await self.ledger.settle.remote(ticket, usage_of(gen))


class DriverGuard:
    """The judge's guard on the driver (a `JudgeMeter` wraps it): blocking calls to the ledger; a refusal stops
    the sweep through the driver's guard, as the local backend's guard would."""

    def __init__(self, ledger: Any, local: BudgetGuard):
        self.ledger, self.local = ledger, local

    def admit(self, model: ModelConfig, messages: list[dict]) -> Ticket | None:
        import ray

        ticket, reason = ray.get(self.ledger.admit.remote(model, messages))
        if ticket is None:
            self.local._stop(reason)
        return ticket

    def settle(self, ticket: Ticket, reply: Any) -> float:
        import ray

        return ray.get(self.ledger.settle.remote(ticket, usage_of(reply)))


class SharedBudget:
    """The driver's handle: start the ledger from the driver's guard (earlier runs' spend included), notice a
    stop, copy the counts back."""

    def __init__(self, ray: Any, guard: BudgetGuard):
        self.ray, self.guard = ray, guard
        self.ledger = ray.remote(Ledger).options(num_cpus=0).remote(
            BudgetGuard(guard.budget, dict(guard.prices), calls=guard.calls, usd=guard.usd,
                        latencies=list(guard.latencies), stopped=guard.stopped),
            time.perf_counter() - guard.started)

    def meter_guard(self) -> DriverGuard:
        return DriverGuard(self.ledger, self.guard)

    async def check(self) -> None:
        """A worker handed back a cell it never started: if the ledger stopped, stop the sweep here too."""
        stopped = (await self.ledger.state.remote())["stopped"]
        if stopped and self.guard.stopped is None:
            self.guard._stop(stopped)

    def pull(self) -> None:
        """The ledger's counts into the driver's guard (its stop reason too, and the cancel it implies)."""
        state = self.ray.get(self.ledger.state.remote(), timeout=60)
        g = self.guard
        g.calls, g.usd, g.reserved, g.latencies = state["calls"], state["usd"], 0.0, state["latencies"]
        if state["stopped"] and g.stopped is None:
            g._stop(state["stopped"])

    def close(self) -> None:
        try:
            self.pull()
        finally:
            self.ray.kill(self.ledger)
