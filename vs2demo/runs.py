"""Two runs over the same videos, side by side: how far the judge agrees with itself (4-bit against
bf16, this app's defaults against the authors' settings, two prompt templates) or with another
judge whose records have the same format. Pure Python and numpy: no torch, no Gradio.

A run is what `explore.run_name` names (the model and the settings that change its answer); when
two loaded files would fall into one run (another judge's records in the same format, the same
model twice), each file is a run of its own, named by its file (`run_labels`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import DIMENSION_SHORT, DIMENSIONS
from .bootstrap import seeded_mean_intervals
from .errors import UserInputError
from .explore import run_name
from .metrics import aligned, confusion, video_key
from .records_io import read_records
from .results import SCORE_LEVELS, ScoreResult

SEED = 0
RESAMPLES = 2000
DIGITS = 3
TOP_DISAGREEMENTS = 20
MAX_RESAMPLES = 20_000  # a visitor's choice: bounded, so one request cannot hold the app for minutes
MIN_RESAMPLES = 100


def bounded_resamples(resamples: int) -> int:
    return max(MIN_RESAMPLES, min(int(resamples), MAX_RESAMPLES))


def run_labels(records: list[ScoreResult], sources: list[tuple[str, int]] | None = None) -> list[str]:
    """Each record's run in plain words: its `run_name`, followed by its file's name where the same
    run_name comes from more than one file. `sources`: (file name, how many records) in the order
    the records were read; a file name given twice is told apart by its position."""
    names = [run_name(record) for record in records]
    if not sources or len(sources) < 2:
        return names
    given = Counter(name for name, _ in sources)
    files = []
    for position, (name, count) in enumerate(sources, start=1):
        files += [name if given[name] == 1 else f"{name} (file {position})"] * count
    files += [""] * (len(records) - len(files))
    from_files: dict[str, set] = {}
    for name, file in zip(names, files):
        from_files.setdefault(name, set()).add(file)
    return [f"{name} · from {file}" if len(from_files[name]) > 1 else name for name, file in zip(names, files)]


# ---- pairing --------------------------------------------------------------------------------------

@dataclass
class Pairing:
    """The records of two runs paired by video and prompt: positions in each run's list."""

    pairs: list[tuple[int, int]]
    only_a: int
    only_b: int
    failed_a: int
    failed_b: int
    repeated_a: int  # records of a (video, prompt) seen before in the same run: the last one counts
    repeated_b: int


def _by_key(records: list[ScoreResult]) -> tuple[dict, int, int]:
    kept, failed, repeated = {}, 0, 0
    for position, record in enumerate(records):
        if record.error is not None:
            failed += 1
            continue
        key = (video_key(record.video), record.prompt)
        repeated += key in kept
        kept[key] = position  # the last record of a video wins, as a re-run appended to --out
    return kept, failed, repeated


def pair_runs(a: list[ScoreResult], b: list[ScoreResult]) -> Pairing:
    """Scored records of the same video (metrics.video_key) and the same prompt; failed ones left out."""
    in_a, failed_a, repeated_a = _by_key(a)
    in_b, failed_b, repeated_b = _by_key(b)
    pairs = [(position, in_b[key]) for key, position in in_a.items() if key in in_b]
    return Pairing(pairs, len(in_a) - len(pairs), len(in_b) - len(pairs), failed_a, failed_b, repeated_a, repeated_b)


# ---- the figures ----------------------------------------------------------------------------------

def quadratic_kappa(matrix) -> float | None:
    """Cohen's kappa with quadratic weights over the categories 1..5: 1 - Σ w·observed / Σ w·expected,
    w = (i - j)² / 16, expected from the two margins. None where it is undefined: no items, or both
    runs gave one and the same score to all (no disagreement was possible by chance)."""
    observed = np.asarray(matrix, dtype=np.float64)
    n = observed.sum()
    if n == 0:
        return None
    levels = np.arange(5)
    weights = (levels[:, None] - levels[None, :]) ** 2 / 16.0
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n
    chance = (weights * expected).sum()
    if chance == 0:
        return None
    return round(float(1 - (weights * observed).sum() / chance), DIGITS)


def _whole_scores(records: list[ScoreResult], positions: list[int], key: str) -> list[int | None]:
    """A dimension's integer score, None where it is missing or outside 1..5 (the authors' reading may
    keep a "0" or an "8": no category of the five)."""
    scores = [records[position].scores[key].score for position in positions]
    return [int(score) if score in SCORE_LEVELS else None for score in scores]


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def dimension_figures(a: list[ScoreResult], b: list[ScoreResult], pairs: list[tuple[int, int]],
                      key: str) -> tuple[dict, np.ndarray]:
    """One dimension's agreement on the integer scores and B − A on the expected scores (its
    interval to come), and the paired differences B − A."""
    a_scores = _whole_scores(a, [i for i, _ in pairs], key)
    b_scores = _whole_scores(b, [j for _, j in pairs], key)
    both = [(x, y) for x, y in zip(a_scores, b_scores) if x is not None and y is not None]
    xs, ys = np.array([x for x, _ in both], dtype=np.int64), np.array([y for _, y in both], dtype=np.int64)
    matrix = confusion(ys, xs)  # rows A, columns B: A in the place of people's labels
    a_expected = [a[i].scores[key].expected for i, _ in pairs]
    b_expected = [b[j].scores[key].expected for _, j in pairs]
    kept = [(x, y) for x, y in zip(a_expected, b_expected) if x is not None and y is not None]
    difference = np.array([y - x for x, y in kept], dtype=np.float64)
    return {
        "n_scores": len(both),
        "exact": _percent(int((xs == ys).sum()), len(both)),
        "within_one": _percent(int((np.abs(xs - ys) <= 1).sum()), len(both)),
        "kappa": quadratic_kappa(matrix),
        "confusion": matrix,
        "n_expected": len(kept),
        "mean_a": round(float(np.mean([x for x, _ in kept])), DIGITS) if kept else None,
        "mean_b": round(float(np.mean([y for _, y in kept])), DIGITS) if kept else None,
        "mean_difference": round(float(difference.mean()), DIGITS) if kept else None,
        "ci": None,
    }, difference


def _scores_of(record: ScoreResult) -> dict:
    scores = {key: record.scores[key] for key in DIMENSIONS}
    return {key: {"score": dim.score, "expected": None if dim.expected is None else round(dim.expected, DIGITS)}
            for key, dim in scores.items()}


def disagreements(a: list[ScoreResult], b: list[ScoreResult], pairs: list[tuple[int, int]],
                  top: int = TOP_DISAGREEMENTS) -> list[dict]:
    """The pairs where the runs differ most: the absolute differences of the expected scores summed
    over the dimensions (a dimension without both expected scores adds nothing), largest first; ties
    in the order of run A."""
    gaps = [sum(abs(b[j].scores[key].expected - a[i].scores[key].expected) for key in DIMENSIONS
                if a[i].scores[key].expected is not None and b[j].scores[key].expected is not None) for i, j in pairs]
    order = sorted(range(len(pairs)), key=lambda n: -gaps[n])[:top]
    return [{"video": a[pairs[n][0]].video, "prompt": a[pairs[n][0]].prompt, "gap": round(gaps[n], DIGITS),
             "a_record": pairs[n][0], "b_record": pairs[n][1],
             "a": _scores_of(a[pairs[n][0]]), "b": _scores_of(b[pairs[n][1]])} for n in order if gaps[n] > 0]


def compare_runs(a: list[ScoreResult], b: list[ScoreResult], names: tuple[str, str] = ("A", "B"),
                 seed: int = SEED, resamples: int = RESAMPLES, top: int = TOP_DISAGREEMENTS) -> dict:
    """Every figure of two runs side by side, JSON-ready: what the CLI's --json prints and the
    Explore tab shows. `a_record`/`b_record` of a disagreement: its position in that run's list."""
    resamples = bounded_resamples(resamples)
    pairing = pair_runs(a, b)
    figures, differences = {}, {}
    for key in DIMENSIONS:
        figures[key], differences[key] = dimension_figures(a, b, pairing.pairs, key)
    for key, ci in seeded_mean_intervals(differences, seed, resamples, DIGITS).items():
        figures[key]["ci"] = ci
    return {
        "a": {"name": names[0], "records": len(a), "failed": pairing.failed_a, "repeated": pairing.repeated_a},
        "b": {"name": names[1], "records": len(b), "failed": pairing.failed_b, "repeated": pairing.repeated_b},
        "paired": len(pairing.pairs), "only_a": pairing.only_a, "only_b": pairing.only_b,
        "seed": seed, "resamples": resamples, "kappa_weights": "quadratic",
        "dimensions": figures,
        "disagreements": disagreements(a, b, pairing.pairs, top),
    }


# ---- as words -------------------------------------------------------------------------------------

def pairing_sentence(report: dict) -> str:
    """How many videos were paired and what was left out, in one sentence (the tab and the CLI)."""
    a, b = report["a"], report["b"]
    text = (f"{report['paired']:,} videos paired (same video and prompt); {report['only_a']:,} only in A, "
            f"{report['only_b']:,} only in B; failed records left out: {a['failed']:,} of A, {b['failed']:,} of B")
    repeated = [f"{side['repeated']:,} in {name}" for name, side in (("A", a), ("B", b)) if side["repeated"]]
    if repeated:
        text += f"; repeated videos (the last record counts): {', '.join(repeated)}"
    return text + "."


def _cell(value, pattern: str = "{:g}") -> str:
    return "–" if value is None else pattern.format(value)


DIMENSION_HEADERS = ["Dimension", "Pairs", "Exact %", "Within 1 %", "Kappa (quadratic)", "Mean A", "Mean B",
                     "B − A", "95% interval"]


def dimension_rows(report: dict, names: dict[str, str]) -> list[list[str]]:
    """The per-dimension table as text cells, `names` the dimensions' titles."""
    return [[names[key], f"{d['n_scores']:,}", _cell(d["exact"]), _cell(d["within_one"]), _cell(d["kappa"]),
             _cell(d["mean_a"]), _cell(d["mean_b"]), _cell(d["mean_difference"], "{:+.3f}"),
             "[{:+.3f}, {:+.3f}]".format(*d["ci"]) if d["ci"] else "–"]
            for key, d in ((key, report["dimensions"][key]) for key in DIMENSIONS)]


def format_comparison(report: dict) -> str:
    """The readable table `compare-runs` prints without --json."""
    lines = [f"A: {report['a']['name']} ({report['a']['records']:,} records)",
             f"B: {report['b']['name']} ({report['b']['records']:,} records)", pairing_sentence(report),
             f"Agreement on the integer scores (kappa: Cohen's, quadratic weights over 1-5); B − A on the expected "
             f"scores with a percentile bootstrap 95% interval (seed {report['seed']}, {report['resamples']:,} resamples).",
             ""]
    lines += aligned([DIMENSION_HEADERS] + dimension_rows(report, DIMENSION_SHORT))
    if report["disagreements"]:
        lines += ["", "Where they disagree most (sum over the dimensions of |B − A| in expected score):"]
        for n, item in enumerate(report["disagreements"][:10], start=1):
            lines.append(f"{n:>3}. {item['gap']:.2f}  {item['video']}  A {scores_text(item['a'])}  "
                         f"B {scores_text(item['b'])}")
    return "\n".join(lines)


def scores_text(scores: dict) -> str:
    """`4/3/5` from a disagreement's side: the integer scores, V/A/P."""
    return "/".join(_cell(scores[key]["score"]) for key in DIMENSIONS)


# ---- from files -----------------------------------------------------------------------------------

def compare_files(path_a, path_b, seed: int = SEED, resamples: int = RESAMPLES) -> dict:
    """`compare-runs A B`: each file one run, named as the Explore tab names it when both are loaded."""
    a, b = read_records(path_a), read_records(path_b)
    labels = run_labels(a + b, [(Path(path_a).name, len(a)), (Path(path_b).name, len(b))])
    for side, records, names in (("A", a, labels[:len(a)]), ("B", b, labels[len(a):])):
        if not records:
            raise UserInputError(f"{side} holds no records.")
        if len(set(names)) > 1:
            raise UserInputError(f"{side} holds records of {len(set(names))} runs ({'; '.join(sorted(set(names))[:3])}): "
                                 "give one run's records a file (Explore's run filter and export split them).")
    return compare_runs(a, b, (labels[0], labels[len(a)]), seed=seed, resamples=resamples)
