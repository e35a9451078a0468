"""An Optuna study over the space's axes, as an ask/tell loop the sweep (or a benchmark's oracle) drives.

Each axis with more than one entry is a categorical parameter (its index). TPE (multivariate) proposes a
batch of trials; every trial of the batch answers the first halving rung, reports its mean objective at
that many questions, and Optuna's SuccessiveHalvingPruner (the halving rungs as fidelity: min_resource =
the first rung, reduction_factor = eta) prunes it or lets it answer the next rung; a trial that answers the
whole eval set is told its value. NSGA-II optimises objective vs `cost_objective`; Optuna cannot prune a
multi-objective study, so its trials answer the whole set. `n_trials` bounds the study (finished trials,
counted in the storage, so a resumed study does not start over). We write no sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.runner.search.halving import (Ask, Outcome, broken_constraints, plan_rungs, question_order,
                                             score_matrix, tie_outcome)
from workbench.spec_search import SearchConfig

BATCH = 8  # trials asked at once: they answer each rung together (the executor's concurrency stays busy)


def make_study(cfg: SearchConfig, name: str, n_questions: int, storage: Any = None, maximize: bool = True):
    """A new or resumed study (`load_if_exists`): TPE with halving pruning, or NSGA-II on two objectives.
    The sampler and pruner are not stored with the study: every process that resumes it makes them again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    goal = "maximize" if maximize else "minimize"
    if cfg.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=cfg.seed, population_size=BATCH)
        return optuna.create_study(storage=storage, sampler=sampler, study_name=name, load_if_exists=True,
                                   directions=[goal, "minimize"])
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, n_startup_trials=BATCH)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=plan_rungs(n_questions, cfg)[0],
                                                    reduction_factor=max(2, round(cfg.eta)))
    return optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=name, load_if_exists=True,
                               direction=goal)


@dataclass
class OptunaSearch:
    """ask() -> the next rung of the current batch (or None), tell(scores, aggregates) -> variants pruned there.

    `axes`: (name, number of entries) per axis; `variant_of(levels)` names the variant (hash) of a choice.
    """

    study: Any
    axes: Sequence[tuple[str, int]]
    variant_of: Callable[[tuple[int, ...]], str]
    question_ids: Sequence[str]
    cfg: SearchConfig
    maximize: bool = True
    n_trials: int = 1
    rungs: list[int] = field(init=False)
    order: list[str] = field(init=False)
    batch: list[tuple[Any, str]] = field(init=False, default_factory=list)  # (trial, variant), alive this batch
    rung: int = field(init=False, default=0)
    account: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)  # variant -> rung, questions, stopped
    values: dict[str, tuple[float, ...]] = field(init=False, default_factory=dict)  # variants that answered every question

    def __post_init__(self) -> None:
        import optuna

        self.optuna = optuna
        self.multi = self.cfg.sampler == "nsga2"
        n = len(self.question_ids)
        self.rungs = [n] if self.multi else plan_rungs(n, self.cfg)
        self.order = question_order(list(self.question_ids), self.cfg.seed)
        self.distributions = {name: optuna.distributions.CategoricalDistribution(list(range(size)))
                              for name, size in self.axes if size > 1}
        self._resume()

    def _resume(self) -> None:
        """A study resumed after a kill: its finished trials count (and are reported), its in-flight ones are
        asked again with the same parameters (their answers are on disk: no cell is asked twice)."""
        states = self.optuna.trial.TrialState
        n = len(self.question_ids)
        for t in self.study.get_trials(deepcopy=False):
            if t.state == states.RUNNING:
                self.study.enqueue_trial(dict(t.params))
                self.study.tell(t.number, state=states.FAIL)
                continue
            if t.state not in (states.COMPLETE, states.PRUNED):
                continue
            v = self.variant_of(self._levels(t.params))
            q = n if t.state == states.COMPLETE else max(t.intermediate_values, default=0)
            state = self.account.setdefault(v, {"rung": -1, "questions": 0, "stopped": None})
            if q >= state["questions"]:
                state.update(rung=self.rungs.index(q) if q in self.rungs else -1, questions=q)
            if t.state == states.COMPLETE:
                self.values[v] = tuple(t.values)
                state["stopped"] = None
            elif v not in self.values:
                state["stopped"] = f"pruned by Optuna's successive halving at {q} questions"

    def finished(self) -> int:
        states = (self.optuna.trial.TrialState.COMPLETE, self.optuna.trial.TrialState.PRUNED)
        return len(self.study.get_trials(deepcopy=False, states=states))

    def _levels(self, params: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(int(params.get(name, 0)) for name, _ in self.axes)

    def ask(self) -> Ask | None:
        while not self.batch:
            left = self.n_trials - self.finished()
            if left <= 0:
                return None
            self.rung = 0
            for _ in range(min(BATCH, left)):
                trial = self.study.ask(self.distributions)
                variant = self.variant_of(self._levels(trial.params))
                if variant in self.values:  # proposed again: its answers are known, no cell is asked
                    self.study.tell(trial, list(self.values[variant]) if self.multi else self.values[variant][0])
                else:
                    self.batch.append((trial, variant))
        variants = tuple(dict.fromkeys(v for _, v in self.batch))
        size = self.rungs[self.rung]
        return Ask(self.rung, variants, tuple(self.order[:size]), self.rung == len(self.rungs) - 1)

    def tell(self, scores: Mapping[str, Mapping[str, float | None]],
             aggregates: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, str]:
        ask = self.ask()
        if ask is None:
            raise RuntimeError("tell() after the search ended")
        size = len(ask.question_ids)
        broken = broken_constraints(self.cfg, ask, aggregates or {}) if self.cfg.constraints else {}
        mean: dict[str, float] = {}
        for v in ask.variants:
            m, n = score_matrix([v], ask.question_ids, scores, True)
            mean[v] = float(m.mean()) if n else math.nan
            state = self.account.setdefault(v, {"rung": -1, "questions": 0, "stopped": None})
            if size >= state["questions"]:
                state.update(rung=ask.rung, questions=size)
        stopped: dict[str, str] = {}
        alive = []
        pruned = self.optuna.trial.TrialState.PRUNED
        for trial, v in self.batch:
            if v in broken or math.isnan(mean[v]):
                self.study.tell(trial, state=pruned if v in broken else self.optuna.trial.TrialState.FAIL)
                stopped[v] = broken.get(v, f"no scored question on rung {ask.rung}")
            elif ask.last:
                cost = (aggregates or {}).get(v, {}).get(self.cfg.cost_objective)
                values = (mean[v],) if not self.multi else (mean[v], math.nan if cost is None else float(cost))
                if any(math.isnan(x) for x in values):
                    self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                    stopped[v] = f"{self.cfg.cost_objective} is unknown: NSGA-II cannot place it"
                    continue
                self.study.tell(trial, list(values) if self.multi else values[0])
                self.values[v] = values
                self.account[v]["stopped"] = None  # pruned in an earlier batch, completed now
            else:
                trial.report(mean[v], step=size)
                alive.append((trial, v))
        if not ask.last:
            self.batch = []
            for trial, v in alive:  # every report first, so the pruner compares the whole batch
                if trial.should_prune():
                    self.study.tell(trial, state=pruned)
                    stopped[v] = (f"pruned by Optuna's successive halving at {size} questions "
                                  f"(mean {self.cfg.objective} {mean[v]:.3g} on rung {ask.rung})")
                else:
                    self.batch.append((trial, v))
            self.rung += 1
        else:
            self.batch = []
        for v, why in stopped.items():
            if v not in self.values:
                self.account[v]["stopped"] = why
        return stopped

    def outcome(self, full_scores: Mapping[str, np.ndarray]) -> Outcome:
        """The best variant that answered every question, and those tied with it there."""
        if not self.values:
            return Outcome(None, (), "no trial answered the whole eval set")
        means = {v: self.values[v][0] if self.maximize else -self.values[v][0] for v in self.values}
        return tie_outcome({v: full_scores[v] for v in self.values}, self.cfg.alpha, "the whole eval set", means)
