"""The cluster's budget ledger without a cluster (plain Python: Ray only hosts it): it starts from what the
driver's guard already counted, refuses past a cap with the guard's reason, and keeps max_wall_s on the
driver's clock. The ledger under real Ray workers: tests/test_scale_out.py."""

from __future__ import annotations

from workbench.runner.budget import BudgetGuard
from workbench.runner.ray_budget import Ledger, Usage
from workbench.spec import ModelConfig
from workbench.spec_budget import BudgetConfig

MODEL = ModelConfig(provider="openai", model="m", base_url="http://127.0.0.1:9/v1", max_tokens=8,
                    price_input_per_mtok=2.0, price_output_per_mtok=8.0)
MESSAGES = [{"role": "user", "content": "Which NFL team won Super Bowl 50?"}]


def test_the_ledger_counts_earlier_calls_and_refuses_past_the_cap_with_its_reason():
    earlier = BudgetGuard(BudgetConfig(max_calls=3), calls=1)  # a stopped run's call, counted by resume_from
    ledger = Ledger(earlier, elapsed_s=0.0)
    first, _ = ledger.admit(MODEL, MESSAGES)
    second, _ = ledger.admit(MODEL, MESSAGES)
    refused, reason = ledger.admit(MODEL, MESSAGES)
    assert first is not None and second is not None and refused is None
    assert reason == "max_calls 3 reached (3 calls made)"
    ledger.settle(first, Usage(10, 4))
    ledger.settle(second, None)  # a failed call costs nothing
    assert ledger.state() == {"calls": 3, "usd": 0.0, "stopped": reason, "latencies": ledger.guard.latencies}
    assert len(ledger.state()["latencies"]) == 1


def test_max_usd_reserves_worst_cases_in_flight_and_settles_to_the_usage():
    from workbench.runner.forecast import model_key

    guard = BudgetGuard(BudgetConfig(max_usd=1.0), {model_key(MODEL): (2e-6, 8e-6)})
    ledger = Ledger(guard, elapsed_s=0.0)
    ticket, _ = ledger.admit(MODEL, MESSAGES)
    assert ledger.guard.reserved == ticket.usd > 8 * 8e-6  # prompt's upper bound + max_tokens, in flight
    assert ledger.settle(ticket, Usage(10, 4)) == 10 * 2e-6 + 4 * 8e-6
    assert ledger.guard.reserved == 0.0


def test_max_wall_s_counts_the_seconds_the_driver_already_ran():
    ledger = Ledger(BudgetGuard(BudgetConfig(max_wall_s=5.0)), elapsed_s=6.0)
    ticket, reason = ledger.admit(MODEL, MESSAGES)
    assert ticket is None and reason.startswith("max_wall_s 5")
