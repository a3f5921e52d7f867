"""95% confidence intervals for the metrics: a seeded percentile bootstrap, so the same records
always give the same intervals.

Each figure's items (a dimension's labelled items, the pairs of a preference column) are drawn
again with replacement RESAMPLES times and the figure computed on every draw as `metrics` computes
it; the interval is the 2.5th and 97.5th percentile of those. A draw where the figure is undefined
(a constant column) is left out. Pure numpy, vectorized over the draws.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000
SEED = 20250926  # fixed: the same inputs give the same intervals, run after run
LEVEL = 95
# Over many items fewer draws are taken (at least MIN_RESAMPLES), so Explore stays responsive for
# 100,000 rows; their intervals are narrow, and the percentiles of a few hundred draws place them well.
MAX_CELLS = 3_000_000
MIN_RESAMPLES = 200
# Draws are taken in blocks of at most this many numbers, so memory stays bounded.
BLOCK_CELLS = 1_000_000


def draws(n: int, seed: int = SEED, resamples: int | None = None, dtype=np.int64):
    """Blocks of resampled indices (each row a draw of `n` indices), the same for the same n, seed
    and dtype; `resamples` draws in all (default: RESAMPLES, fewer over many items)."""
    rng = np.random.default_rng(seed)
    if resamples is None:
        resamples = max(MIN_RESAMPLES, min(RESAMPLES, MAX_CELLS // max(n, 1)))
    block = max(1, min(resamples, BLOCK_CELLS // max(n, 1)))
    done = 0
    while done < resamples:
        rows = min(block, resamples - done)
        yield rng.integers(0, n, size=(rows, n), dtype=dtype)
        done += rows


def interval(values: np.ndarray, digits: int) -> list[float] | None:
    """The central LEVEL% of the draws' figures (undefined draws left out), rounded as the figure is."""
    finite = values[np.isfinite(values)]
    if finite.size < len(values) / 2:  # undefined in most draws: no interval worth the name
        return None
    low, high = np.percentile(finite, [(100 - LEVEL) / 2, 100 - (100 - LEVEL) / 2])
    return [round(float(low), digits), round(float(high), digits)]


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of x against the same row of y (NaN where a row is constant)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / denominator
    r[denominator == 0] = np.nan
    # A row that is constant up to rounding gives a denominator of noise: scipy calls it constant too.
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    r[constant] = np.nan
    return r


def _row_counts(values: np.ndarray, size: int, weights=None) -> np.ndarray:
    """Per row of `values` (integers 0..size-1), how often each integer occurs (or its weights' sum)."""
    rows = values.shape[0]
    flat = (np.arange(rows)[:, None] * size + values).ravel()
    return np.bincount(flat, weights=weights, minlength=rows * size).reshape(rows, size)


def _ranks_rows(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The average ranks (as scipy's rankdata gives them) of each draw's values, found from counts
    of the distinct values rather than a sort per draw."""
    distinct, group = np.unique(values, return_inverse=True)
    drawn = group[idx]
    counts = _row_counts(drawn, len(distinct))
    rank_of_group = np.cumsum(counts, axis=1) - (counts - 1) / 2
    return np.take_along_axis(rank_of_group, drawn, axis=1)


def dimension_intervals(model: list[float], rounded: list[float], human: list[float], digits: int) -> dict:
    """Intervals of one dimension's exact and relaxed accuracy, PLCC and SRCC (x100)."""
    n = len(model)
    names = ("exact_acc", "relaxed_acc", "plcc", "srcc")
    if n < 2:
        return {name: None for name in names}
    m, r, h = (np.asarray(v, dtype=np.float64) for v in (model, rounded, human))
    exact = (r == h).astype(np.float64)
    relaxed = (np.abs(r - h) <= 1).astype(np.float64)
    figures: dict[str, list] = {name: [] for name in names}
    for idx in draws(n):
        figures["exact_acc"].append(exact[idx].mean(axis=1) * 100)
        figures["relaxed_acc"].append(relaxed[idx].mean(axis=1) * 100)
        figures["plcc"].append(_pearson_rows(m[idx], h[idx]) * 100)
        figures["srcc"].append(_pearson_rows(_ranks_rows(m, idx), _ranks_rows(h, idx)) * 100)
    return {name: interval(np.concatenate(values), digits) for name, values in figures.items()}


def mean_interval(indicators: list[float], scale: float, digits: int) -> list[float] | None:
    """The interval of a mean of per-item values (a share right x100, a Brier score)."""
    n = len(indicators)
    if n < 2:
        return None
    x = np.asarray(indicators, dtype=np.float64)
    return interval(np.concatenate([x[idx].mean(axis=1) * scale for idx in draws(n)]), digits)


def seeded_mean_intervals(columns: dict, seed: int, resamples: int, digits: int) -> dict:
    """The interval of each column's mean over `resamples` draws from `seed` (the same values and
    seed: the same interval; compare-runs and rank-generators let the reader choose both). Columns
    of one length share their draws, as a column alone would draw them: drawing is most of the cost."""
    found = {}
    by_length: dict[int, list] = {}
    for name, values in columns.items():
        by_length.setdefault(len(values), []).append(name)
    for n, names in by_length.items():
        if n < 2:
            found.update(dict.fromkeys(names))
            continue
        xs = [np.ascontiguousarray(columns[name], dtype=np.float64) for name in names]
        means: list[list] = [[] for _ in names]
        for idx in draws(n, seed, resamples, dtype=np.int32):  # int32: a third quicker to draw
            for kept, x in zip(means, xs):
                kept.append(x[idx].mean(axis=1))
        found.update({name: interval(np.concatenate(kept), digits) for name, kept in zip(names, means)})
    return found


def ece_interval(confidence: list[float], right: list[float], bins: int, digits: int) -> list[float] | None:
    """The interval of the expected calibration error over `bins` equal-width confidence bins."""
    n = len(confidence)
    if n < 2:
        return None
    c, a = np.asarray(confidence, dtype=np.float64), np.asarray(right, dtype=np.float64)
    which = np.minimum(bins - 1, (c * bins).astype(int))
    values = []
    for idx in draws(n):
        gap = _row_counts(which[idx], bins, weights=(a[idx] - c[idx]).ravel())
        values.append(np.abs(gap).sum(axis=1) / n)  # sum over bins of |n_b (acc_b - conf_b)| / n
    return interval(np.concatenate(values), digits)


def pairwise_intervals(human: list[int], diffs: list[float], margin: float, digits: int) -> dict:
    """Intervals of the pairwise accuracies: with ties at `margin`, without ties, and the Ties
    Matter sweep (as the leaderboard runs it, and over real thresholds only). A draw is a count of
    each pair; its pairs are taken in the order the sweep sorts them (by |diff|, stably)."""
    names = ("acc_with_ties", "acc_without_ties", "ties_matter", "ties_matter_real_thresholds")
    n = len(human)
    if n < 2:
        return {name: None for name in names}
    order = np.argsort(np.abs(np.asarray(diffs, dtype=np.float64)), kind="stable")
    h, d = np.asarray(human, dtype=np.float64)[order], np.asarray(diffs, dtype=np.float64)[order]
    agree = h * d > 0
    with_ties = ((h == 0) & (np.abs(d) <= margin)) | ((h != 0) & (np.abs(d) > margin) & agree)
    untied = h != 0
    # Making a pair a model tie changes the count right by this much.
    step = (h == 0).astype(np.float64) - agree
    last_of_value = np.append(np.abs(d)[1:] != np.abs(d)[:-1], True)
    figures: dict[str, list] = {name: [] for name in names}
    for idx in draws(n):
        counts = _row_counts(idx, n)[:, order]  # each pair's count, in the sweep's order
        figures["acc_with_ties"].append(counts @ with_ties / n * 100)
        with np.errstate(invalid="ignore", divide="ignore"):
            figures["acc_without_ties"].append(counts @ (agree & untied) / (counts @ untied) * 100)
        # The count right after every copy of each pair has become a tie, and after its first copy
        # (between them the count moves one way: the best of a pair's steps is one of these two).
        after = counts @ agree.astype(np.float64)
        after = after[:, None] + np.cumsum(counts * step, axis=1)
        first = after - (counts - 1) * step
        present = counts > 0
        best = np.maximum(np.where(present, after, -np.inf), np.where(present, first, -np.inf)).max(axis=1)
        figures["ties_matter"].append(best / n * 100)
        # Real thresholds: after the last pair of each |diff| (its state counts whether drawn or not).
        group_present = np.maximum.reduceat(present, np.flatnonzero(np.append(True, last_of_value[:-1])), axis=1)
        ends = after[:, last_of_value]
        figures["ties_matter_real_thresholds"].append(np.where(group_present, ends, -np.inf).max(axis=1) / n * 100)
    return {name: interval(np.concatenate(values), digits) for name, values in figures.items()}
