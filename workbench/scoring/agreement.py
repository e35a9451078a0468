"""How far an LLM judge agrees with people: accuracy and Cohen's κ against human labels, with CIs.

A judged metric is a score in [0, 1]; a human label is correct / partly / wrong. The human side is
binary (`positive` verdicts, by default only "correct", are 1); the judge's side is its score at a
threshold chosen on the labels (the one with the best accuracy, then κ, then nearest 0.5). Choosing
on the same labels flatters the judge, so the bootstrap CIs choose the threshold again in every
resample: they include that optimism. κ and the confusion counts are scikit-learn's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_LABELS = 10
N_BOOTSTRAP = 1000
LOW_KAPPA = 0.4  # below this, "fair" agreement at best (Landis & Koch): the Results view warns


@dataclass(frozen=True)
class Agreement:
    metric: str
    n: int
    threshold: float | None = None
    accuracy: float | None = None
    accuracy_ci: tuple[float, float] | None = None
    kappa: float | None = None
    kappa_ci: tuple[float, float] | None = None
    tn: int = 0
    fp: int = 0
    fn: int = 0
    tp: int = 0
    note: str = ""

    @property
    def low(self) -> bool:
        """Too little agreement to trust the judge's numbers (or κ undefined: one class only)."""
        return self.threshold is not None and (self.kappa is None or self.kappa < LOW_KAPPA)

    def row(self) -> dict:
        d = asdict(self)
        acc, kap = d.pop("accuracy_ci") or (None, None), d.pop("kappa_ci") or (None, None)
        d.update(accuracy_ci_low=acc[0], accuracy_ci_high=acc[1], kappa_ci_low=kap[0], kappa_ci_high=kap[1], low=self.low)
        return d


def kappa(human: np.ndarray, judge: np.ndarray) -> float | None:
    """Cohen's κ of two 0/1 raters; None when it is undefined (both gave one and the same class)."""
    from sklearn.metrics import cohen_kappa_score

    if len(set(human.tolist()) | set(judge.tolist())) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when one rater is constant
        value = float(cohen_kappa_score(human, judge))
    return None if np.isnan(value) else value


def fast_kappa(human: np.ndarray, judge: np.ndarray) -> float | None:
    """`kappa` from the 2×2 counts in numpy: the bootstrap calls it thousands of times (scikit-learn's
    input checks cost more than the sum); a test holds it equal to scikit-learn's."""
    n = human.size
    po = float((human == judge).mean())
    ph, pj = human.mean(), judge.mean()
    pe = float(ph * pj + (1 - ph) * (1 - pj))
    if n == 0 or pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def _candidates(scores: np.ndarray) -> np.ndarray:
    u = np.unique(scores)
    return np.concatenate([[u[0] - 1e-9], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-9]]) if u.size else u


def choose_threshold(scores: np.ndarray, human: np.ndarray) -> float:
    """The cut (judge says yes when score >= cut) with the best accuracy, then κ, then nearest 0.5."""
    cuts = _candidates(scores)
    pred = scores[None, :] >= cuts[:, None]
    acc = (pred == human[None, :].astype(bool)).mean(axis=1)
    best = np.flatnonzero(acc == acc.max())
    if best.size > 1:
        kappas = np.array([k if (k := fast_kappa(human, pred[i].astype(int))) is not None else -2.0 for i in best])
        best = best[kappas == kappas.max()]
    return float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]])


def agreement(metric: str, scores: Sequence[float], human: Sequence[int], *, min_labels: int = MIN_LABELS,
              n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> Agreement:
    """Accuracy and κ of the thresholded judge against 0/1 human labels, with 95 % bootstrap CIs."""
    from sklearn.metrics import confusion_matrix

    s, h = np.asarray(scores, dtype=float), np.asarray(human, dtype=int)
    if s.shape != h.shape:
        raise ValueError(f"{metric}: {s.size} scores but {h.size} labels")
    n = int(s.size)
    if n < min_labels:
        return Agreement(metric, n, note=f"{n} labelled answers with a judge score; {min_labels} needed")
    cut = choose_threshold(s, h)
    pred = (s >= cut).astype(int)
    tn, fp, fn, tp = (int(x) for x in confusion_matrix(h, pred, labels=[0, 1]).ravel())
    rng = np.random.default_rng(seed)
    accs, kappas = [], []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        bs, bh = s[idx], h[idx]
        bp = (bs >= choose_threshold(bs, bh)).astype(int)
        accs.append(float((bp == bh).mean()))
        k = fast_kappa(bh, bp)
        if k is not None:
            kappas.append(k)
    k = kappa(h, pred)
    note = "" if k is not None else "κ undefined: the labels or the judge's verdicts are all one class"
    return Agreement(metric, n, cut, float((pred == h).mean()), tuple(np.percentile(accs, [2.5, 97.5]).tolist()),
                     k, tuple(np.percentile(kappas, [2.5, 97.5]).tolist()) if kappas else None,
                     tn, fp, fn, tp, note)
