"""The judge against people: the VideoScore2 paper's metrics, computed as the authors' evaluation
code computes them, plus calibration of the score probabilities.

What the authors' code does (TIGER-AI-Lab/VideoScore2 `eval/get_acc_corr.py` and
`eval/get_pairwise_acc.py`, read at commit e0076822), and so what this does:
- An item whose model score is missing in any of the three dimensions is dropped from every
  dimension (`_remove_null_scores`).
- A soft score (the expected value or the "normed" score) is rounded with Python's `round()`, which
  rounds halves to even (2.5 -> 2), and clipped to 1-5 for the accuracies; the correlations use it
  raw. The integer score is used as it is.
- Exact accuracy: rounded score == label; relaxed: |rounded - label| <= 1; both x100, 3 decimals.
- The soft scores are theirs, from p(1..5): `normed` as vs2_inference.py's `ll_based_soft_score_normed`
  (rounded to 4 decimals there), `expected` as vs2_float_weighted.py's weighted one; none without
  probabilities.
- PLCC and SRCC: scipy's `pearsonr` and `spearmanr` x100, 3 decimals (None where undefined, where
  theirs give NaN: fewer than two items, or a constant column; `undefined` says which).
- All three exact: items whose three rounded scores all equal their labels, over all items kept.
- Pairwise accuracy with ties: a predicted tie when the score gap is within 0.5 (integer scores)
  or 0.001 (soft scores); pairs labelled as ties are kept and right only when a tie is predicted;
  without ties: tie-labelled pairs are left out and a predicted tie is wrong.
- The "Ties Matter" sweep (Deutsch et al. 2023) as VideoGen-RewardBench's leaderboard runs it
  (KwaiVGI/VideoAlign `calc_accuracy_with_ties`), and the same sweep over real thresholds only.

Calibration (which none of those scripts has): p(1..5) against the label, as a reliability
diagram, the expected calibration error (10 equal-width confidence bins, top label) and the
multi-class Brier score. Nor do they have these, which say how far a figure can be trusted: each
figure's 95% bootstrap interval (`bootstrap`, seeded), and `flags` where it rests on fewer than
MIN_ITEMS items or, for a correlation, on a column that is constant but for noise.

Labels in a dimension an item lacks are left out of that dimension (the authors' data always has
all three). Pure Python and scipy: no torch, no Gradio.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass, field

from . import DIMENSION_SHORT, DIMENSIONS
from .errors import UserInputError
from . import bootstrap
from .records_io import cell_number, csv_rows, read_text, too_many
from .results import SCORE_LEVELS, DimensionScore, ScoreResult, normed_soft_score, weighted_soft_score

SCORE_KINDS = ("int", "expected", "normed")
SCORE_KIND_LABELS = {
    "int": "the integer score the model wrote",
    "expected": "the expected value of p(1..5)",
    "normed": "the authors' normed soft score (argmax x p_argmax / sum p)",
}
# The authors' tie margins: integer scores tie within 0.5, soft scores within 0.001.
TIE_MARGINS = {"int": 0.5, "expected": 0.001, "normed": 0.001}
DIGITS = 3  # the authors' ROUND_DIGIT
CALIBRATION_DIGITS = 4
# Figures over fewer items than this move a lot with a few of them: flagged wherever shown.
MIN_ITEMS = 30
# A column whose values all lie within this span is constant but for noise: a correlation over it
# (2.9999 to 3.0002 gave PLCC -42) measures the noise, and is flagged.
NEARLY_CONSTANT_SPAN = 0.01
CALIBRATION_BINS = 10
# VideoFeedback2 / VideoScore-Bench-v2 label fields.
BENCH_FIELDS = {"visual_score": "visual_quality", "t2v_score": "text_alignment", "phy_score": "physical_consistency"}
PREFERENCES = {"a": 1, "b": -1, "tie": 0, "same": 0}
MAX_EXTRA_COLUMNS = 16  # a labels file's other columns kept for slicing (a generator, a category, ...)
MAX_EXTRA_CHARS = 200


# ---- reading records, labels and pairs --------------------------------------------------------------

@functools.lru_cache(maxsize=1 << 17)
def video_key(name: str) -> str:
    """The name a record and a label are matched by: the file's name without folders (either kind of
    slash) and without its extension, so `clips/a.mp4`, `a.mp4` and the bench's `a` meet. (Cached:
    a page of 10,000 records asks for every key at each filter.)"""
    base = str(name).strip().replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    return stem if dot and stem and extension.isalnum() and len(extension) <= 5 else base


@dataclass
class Label:
    """People's scores for one video (a dimension they did not score is absent), and the label
    file's other columns (the generator, say) for slicing."""

    video: str
    scores: dict[str, float]
    prompt: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def read_labels(source, name: str = "", limit: int | None = None, scores_required: bool = True) -> list[Label]:
    """Human labels: a CSV `video,visual_quality,text_alignment,physical_consistency` (prompt and any
    other columns optional), or the VideoFeedback2 / VideoScore-Bench-v2 JSON (`video_name`,
    `visual_score`, `t2v_score`, `phy_score`). At most `limit` labels; of the other columns (kept
    for slicing) the first MAX_EXTRA_COLUMNS, each value at most MAX_EXTRA_CHARS long. Without
    `scores_required`, a CSV row without scores is kept (a `video,generator` file of metadata)."""
    name = name or (str(source) if not isinstance(source, bytes) else "")
    text = read_text(source)
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            try:  # JSON lines
                data = [json.loads(line) for line in text.splitlines() if line.strip()]
            except ValueError as exc:
                raise UserInputError(f"The labels file cannot be read as JSON: {exc}.") from None
        if isinstance(data, dict):
            data = [data]
        if limit is not None and len(data) > limit:
            raise too_many(limit, "labels")
        return [_bench_label(item, number) for number, item in enumerate(data, start=1)]
    labels = []
    for number, row in enumerate(csv_rows(text, limit), start=2):
        video = (row.get("video") or row.get("video_name") or "").strip()
        if not video:
            raise UserInputError(f"Row {number} of the labels names no video (a `video` column is needed).")
        scores = {}
        for key in DIMENSIONS:
            value = cell_number(row.get(key), f"labels row {number}, {key}")
            if value is not None:
                scores[key] = value
        if not scores and scores_required:
            raise UserInputError(f"Row {number} of the labels has no score: columns "
                                 f"{', '.join(DIMENSIONS)} are expected.")
        known = {"video", "video_name", "prompt", *DIMENSIONS}
        extra = _kept_extra({k: v for k, v in row.items() if k and k not in known and isinstance(v, str)})
        labels.append(Label(video, scores, (row.get("prompt") or "").strip(), extra))
    return labels


def _kept_extra(columns: dict[str, str]) -> dict[str, str]:
    """A label's other columns as slices use them: the first MAX_EXTRA_COLUMNS, values cut to
    MAX_EXTRA_CHARS (a file of a thousand columns must not hold the app's memory)."""
    return {key: value[:MAX_EXTRA_CHARS] for key, value in list(columns.items())[:MAX_EXTRA_COLUMNS]}


def _bench_label(item, number: int) -> Label:
    if not isinstance(item, dict):
        raise UserInputError(f"Item {number} of the labels is not a JSON object.")
    video = str(item.get("video_name") or item.get("video") or item.get("video_path") or "").strip()
    if not video:
        raise UserInputError(f"Item {number} of the labels names no video (`video_name`).")
    scores = {}
    for source, key in BENCH_FIELDS.items():
        value = cell_number(item.get(source, item.get(key)), f"labels item {number}, {source}")
        if value is not None:
            scores[key] = value
    if not scores:
        raise UserInputError(f"Item {number} of the labels has none of {', '.join(BENCH_FIELDS)}.")
    extra = _kept_extra({k: str(v) for k, v in item.items()
                         if isinstance(v, (str, int, float)) and k not in BENCH_FIELDS and k not in DIMENSIONS
                         and k not in ("video_name", "video", "prompt")})
    return Label(video, scores, str(item.get("prompt") or ""), extra)


@dataclass(frozen=True)
class Pair:
    video_a: str
    video_b: str
    preference: int  # 1: a is preferred, -1: b, 0: a tie
    dimension: str = "overall"


def read_pairs(source, name: str = "") -> list[Pair]:
    """Preference pairs: CSV `video_a,video_b,preference` with `a`, `b` or `tie` (the preference is
    compared on the sum of the three scores, as the authors' VideoGen-RewardBench overall is), and
    optionally a preference column per dimension (`visual_quality`, ...)."""
    pairs = []
    for number, row in enumerate(csv_rows(read_text(source)), start=2):
        a, b = (row.get("video_a") or "").strip(), (row.get("video_b") or "").strip()
        if not a or not b:
            raise UserInputError(f"Row {number} of the pairs lacks `video_a` or `video_b`.")
        for column, dimension in (("preference", "overall"), *((key, key) for key in DIMENSIONS)):
            value = (row.get(column) or "").strip().lower()
            if not value:
                continue
            if value not in PREFERENCES:
                raise UserInputError(f"Row {number} of the pairs: {column} is {value!r}; write a, b or tie.")
            pairs.append(Pair(a, b, PREFERENCES[value], dimension))
    if not pairs:
        raise UserInputError("The pairs file has no preference: columns video_a,video_b,preference are expected.")
    return pairs


# ---- the model's score, as each kind -----------------------------------------------------------------

def model_value(dim: DimensionScore, kind: str) -> float | None:
    """The score the metrics use: the integer, or a soft score computed as the authors do from the
    record's p(1..5) (their weighted formula for `expected`, their rounded `normed`). None where the
    authors' would be: no integer score, or no probabilities (a CSV record's expected column stands
    in for them)."""
    if kind not in SCORE_KINDS:
        raise UserInputError(f"Unknown score kind {kind!r}: choose {', '.join(SCORE_KINDS)}.")
    if dim.score is None:
        return None
    if kind == "int":
        return float(dim.score)
    if not dim.probs:
        return dim.expected if kind == "expected" else None
    return weighted_soft_score(dim.probs) if kind == "expected" else normed_soft_score(dim.probs)


def accuracy_value(value: float, kind: str) -> float:
    """The value compared with the label: soft scores rounded as Python's round() does (halves to
    even) and clipped to 1-5, as the authors' `vs2_float`; the integer as it is."""
    if kind == "int":
        return value
    return float(int(min(5, max(1, round(value)))))


# ---- matching -------------------------------------------------------------------------------------

@dataclass
class Matched:
    """Records paired with labels, and what could not be paired."""

    items: list[tuple[ScoreResult, Label]]
    records_without_label: list[str]
    labels_without_record: list[str]
    duplicates: list[str]


def match(records: list[ScoreResult], labels: list[Label]) -> Matched:
    """Each label with the record of the same video (by name without folders or extension)."""
    by_video: dict[str, Label] = {}
    duplicates = []
    for label in labels:
        key = video_key(label.video)
        if key in by_video:
            duplicates.append(label.video)
        by_video[key] = label
    seen: dict[str, ScoreResult] = {}
    for record in records:
        key = video_key(record.video)
        if key in seen:
            duplicates.append(record.video)
        seen[key] = record  # the last record of a video wins, as a re-run appended to --out
    items = [(record, by_video[key]) for key, record in seen.items() if key in by_video]
    return Matched(items, sorted(r.video for k, r in seen.items() if k not in by_video),
                   sorted(label.video for k, label in by_video.items() if k not in seen), duplicates)


# ---- the metrics ------------------------------------------------------------------------------------

def counted(n: int, noun: str, plural: str | None = None) -> str:
    """"1 item", "2 items": a count with its noun."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _percent(part: int, whole: int) -> float | None:
    return round(part / whole * 100, DIGITS) if whole else None


def correlation(kind: str, xs: list[float], ys: list[float]) -> float | None:
    """scipy's pearsonr ("plcc") or spearmanr ("srcc") x100, 3 decimals; None where undefined
    (`undefined_reason` says why)."""
    from scipy import stats

    if undefined_reason(xs, ys) is not None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coefficient = (stats.pearsonr if kind == "plcc" else stats.spearmanr)(xs, ys)[0]
    coefficient = float(coefficient)
    return round(coefficient * 100, DIGITS) if math.isfinite(coefficient) else None


COLUMNS = ("the model's scores", "people's labels")


def undefined_reason(xs: list[float], ys: list[float]) -> str | None:
    """Why a correlation of xs (the model's) with ys (people's) is undefined (the authors' scripts
    give NaN there), or None."""
    if len(xs) < 2:
        return f"{counted(len(xs), 'item')}: a correlation needs at least 2"
    for values, whose in zip((xs, ys), COLUMNS):
        if len(set(values)) < 2:
            return f"{whose} are all {values[0]:g} (a constant column)"
    return None


def noise_reason(xs: list[float], ys: list[float]) -> str | None:
    """Why a defined correlation is noise: a column that is constant but for tiny differences."""
    for values, whose in zip((xs, ys), COLUMNS):
        if len(set(values)) > 1 and max(values) - min(values) < NEARLY_CONSTANT_SPAN:
            return (f"{whose} span only {max(values) - min(values):.2g} ({min(values):g} to {max(values):g}): "
                    "a correlation over so nearly constant a column is noise")
    return None


def few_items_reason(n: int) -> str | None:
    return f"over {counted(n, 'item')} only: a figure over so few moves a lot" if 0 < n < MIN_ITEMS else None


def _calibration_items(probs: list[tuple[float, ...]], labels: list[int]):
    """Per item: the top label's confidence, whether it is the label, and the Brier score."""
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    best = p.argmax(axis=1)  # the first of equal maxima, as everywhere else here
    confidence = p[np.arange(len(labels)), best]
    truth = np.asarray(labels)[:, None] == np.asarray(SCORE_LEVELS)[None, :]
    right = (np.asarray(SCORE_LEVELS)[best] == np.asarray(labels)).astype(np.float64)
    return confidence, right, ((p - truth) ** 2).sum(axis=1)


def calibration(probs: list[tuple[float, ...]], labels: list[int], bins: int = CALIBRATION_BINS) -> dict:
    """Top-label reliability of p(1..5) against the labels: per equal-width confidence bin the
    count, the mean confidence and the share right; the expected calibration error (the bins' gaps
    weighted by their counts) and the multi-class Brier score (mean over items of sum_k (p_k - y_k)^2)."""
    n = len(labels)
    rows = [{"low": b / bins, "high": (b + 1) / bins, "n": 0, "confidence": 0.0, "accuracy": 0.0} for b in range(bins)]
    if not n:
        return {"n": 0, "ece": None, "brier": None, "bins": rows}
    confidence, right, brier = _calibration_items(probs, labels)
    which = (confidence * bins).astype(int).clip(max=bins - 1)
    ece = 0.0
    for b, row in enumerate(rows):
        inside = which == b
        row["n"] = int(inside.sum())
        if row["n"]:
            row["confidence"] = float(confidence[inside].mean())
            row["accuracy"] = float(right[inside].mean())
            ece += row["n"] / n * abs(row["accuracy"] - row["confidence"])
    return {"n": n, "ece": round(ece, CALIBRATION_DIGITS), "brier": round(float(brier.mean()), CALIBRATION_DIGITS),
            "bins": rows}


def confusion(model: list[float], human: list[float]) -> list[list[int]]:
    """Counts of (label, rounded model score), rows the label 1-5, columns the model's 1-5; values
    outside 1-5 are left out."""
    matrix = [[0] * 5 for _ in range(5)]
    for m, h in zip(model, human):
        if 1 <= m <= 5 and 1 <= h <= 5 and float(m).is_integer() and float(h).is_integer():
            matrix[int(h) - 1][int(m) - 1] += 1
    return matrix


def dimension_metrics(model: list[float], human: list[float], kind: str,
                      probs: list[tuple[float, ...] | None] | None = None, intervals: bool = True) -> dict:
    """One dimension's metrics on the items kept (raw model values and labels, in order), with
    what is undefined and why, what is flagged and why, and (with `intervals`) their 95% intervals."""
    rounded = [accuracy_value(m, kind) for m in model]
    exact = sum(1 for m, h in zip(rounded, human) if m == h)
    relaxed = sum(1 for m, h in zip(rounded, human) if abs(m - h) <= 1)
    result = {"n": len(model), "exact_acc": _percent(exact, len(model)), "relaxed_acc": _percent(relaxed, len(model)),
              "plcc": correlation("plcc", model, human), "srcc": correlation("srcc", model, human),
              "ece": None, "brier": None}
    # No mass on the five digits (the authors' top-k cut them all): nothing to calibrate.
    with_probs = [(p, int(h)) for p, h in zip(probs or [], human) if p and sum(p) > 0 and float(h).is_integer()]
    undefined = {name: "no items" for name in ("exact_acc", "relaxed_acc") if not model}
    undefined |= dict.fromkeys(("plcc", "srcc"), undefined_reason(model, human)) if undefined_reason(model, human) else {}
    intervals_found = bootstrap.dimension_intervals(model, rounded, human, DIGITS) if intervals else {}
    if with_probs:
        calibrated = calibration([p for p, _ in with_probs], [h for _, h in with_probs])
        result.update(ece=calibrated["ece"], brier=calibrated["brier"], calibration=calibrated)
        if intervals:
            confidence, right, brier = _calibration_items([p for p, _ in with_probs], [h for _, h in with_probs])
            intervals_found["ece"] = bootstrap.ece_interval(confidence, right, CALIBRATION_BINS, CALIBRATION_DIGITS)
            intervals_found["brier"] = bootstrap.mean_interval(brier, 1, CALIBRATION_DIGITS)
    else:
        undefined |= dict.fromkeys(("ece", "brier"), "no item has p(1..5) and a whole-number label")
    flags = {}
    for name in ("exact_acc", "relaxed_acc", "plcc", "srcc"):
        reasons = [few_items_reason(len(model)), noise_reason(model, human) if name in ("plcc", "srcc") else None]
        if result[name] is not None and any(reasons):
            flags[name] = "; ".join(reason for reason in reasons if reason)
    for name in ("ece", "brier"):
        if result[name] is not None and few_items_reason(len(with_probs)):
            flags[name] = few_items_reason(len(with_probs))
    result.update(undefined=undefined, flags=flags, ci=intervals_found, confusion=confusion(rounded, human))
    return result


def _pair_value(record: ScoreResult, dimension: str, kind: str) -> float | None:
    if dimension != "overall":
        return model_value(record.scores[dimension], kind)
    values = [model_value(record.scores[key], kind) for key in DIMENSIONS]
    return None if any(v is None for v in values) else sum(values)


def ties_matter(human: list[int], diffs: list[float], real_thresholds_only: bool = False) -> dict:
    """Accuracy with ties at the best tie threshold (Deutsch et al. 2023, "Ties Matter"). As
    VideoAlign's `calc_accuracy_with_ties` runs it (the leaderboard's figure): pairs sorted by |diff|,
    each in turn becomes a model tie and the accuracy is taken after every step, so that among
    pairs with the same |diff| some steps are not real thresholds (with integer scores the figure
    can exceed every real one). With `real_thresholds_only`, only the states after all pairs of one
    |diff| have become ties are scored."""
    n = len(human)
    if not n:
        return {"accuracy": None, "threshold": None}
    right = sum(1 for h, d in zip(human, diffs) if h * d > 0)  # before any model tie: h*d > 0 is right
    order = sorted(range(n), key=lambda i: abs(diffs[i]))
    best, threshold = -math.inf, None
    for position, i in enumerate(order):
        h, d = human[i], diffs[i]
        right += (h == 0) - (h * d > 0)  # now a model tie: right only when people saw a tie
        last_of_value = position == n - 1 or abs(diffs[order[position + 1]]) != abs(d)
        if real_thresholds_only and not last_of_value:
            continue
        if right / n > best:
            best, threshold = right / n, abs(d)
    return {"accuracy": round(best * 100, DIGITS), "threshold": threshold}


def pair_block(human: list[int], diffs: list[float], margin: float, missing: int, intervals: bool = True) -> dict:
    """One preference column's pairwise accuracies (model minus people's preference per pair), with
    what is undefined, flagged, and the 95% intervals."""
    with_ties = sum(1 for h, d in zip(human, diffs)
                    if (h == 0 and abs(d) <= margin) or (h != 0 and abs(d) > margin and h * d > 0))
    untied = [(h, d) for h, d in zip(human, diffs) if h != 0]
    block = {
        "n": len(human), "skipped": missing, "tie_margin": margin,
        "acc_with_ties": _percent(with_ties, len(human)),
        "acc_without_ties": _percent(sum(1 for h, d in untied if h * d > 0), len(untied)), "n_without_ties": len(untied),
        "ties_matter": ties_matter(human, diffs),
        "ties_matter_real_thresholds": ties_matter(human, diffs, real_thresholds_only=True),
    }
    block["undefined"] = ({"acc_with_ties": "no pairs"} if not human else {}) | (
        {"acc_without_ties": "no pair without a tie"} if not untied else {})
    few = f"over {counted(len(human), 'pair')} only: a figure over so few moves a lot" if 0 < len(human) < MIN_ITEMS else None
    block["flags"] = {name: few for name in ("acc_with_ties", "acc_without_ties", "ties_matter",
                                             "ties_matter_real_thresholds") if few}
    block["ci"] = bootstrap.pairwise_intervals(human, diffs, margin, DIGITS) if intervals else {}
    return block


def pairwise(matched_records: dict[str, ScoreResult], pairs: list[Pair], kind: str, intervals: bool = True) -> dict:
    """Pairwise accuracy per preference column: with the authors' fixed tie margin, without ties,
    and the Ties Matter sweep (both ways)."""
    report = {}
    for dimension in ["overall", *DIMENSIONS]:
        chosen = [pair for pair in pairs if pair.dimension == dimension]
        if not chosen:
            continue
        human, diffs, missing = [], [], 0
        for pair in chosen:
            a, b = matched_records.get(video_key(pair.video_a)), matched_records.get(video_key(pair.video_b))
            va = None if a is None else _pair_value(a, dimension, kind)
            vb = None if b is None else _pair_value(b, dimension, kind)
            if va is None or vb is None:
                missing += 1
                continue
            human.append(pair.preference)
            diffs.append(va - vb)
        report[dimension] = pair_block(human, diffs, TIE_MARGINS[kind], missing, intervals)
    return report


def compute(records: list[ScoreResult], labels: list[Label], kind: str = "expected",
            pairs: list[Pair] | None = None, intervals: bool = True) -> dict:
    """Everything `metrics` reports: per dimension n, exact_acc, relaxed_acc, plcc, srcc, ece, brier
    (plus the confusion matrix and the reliability bins, what is undefined and flagged, and with
    `intervals` each figure's 95% bootstrap interval), all_exact_acc, and the pairwise block (on
    every record with its three scores, labelled or not)."""
    if kind not in SCORE_KINDS:
        raise UserInputError(f"Unknown score kind {kind!r}: choose {', '.join(SCORE_KINDS)}.")
    matched = match(records, labels)
    kept, dropped = [], 0
    for record, label in matched.items:
        values = {key: model_value(record.scores[key], kind) for key in DIMENSIONS}
        if any(v is None for v in values.values()):
            dropped += 1  # the authors' _remove_null_scores: missing in one dimension, out of all
            continue
        kept.append((record, label, values))
    dimensions = {}
    for key in DIMENSIONS:
        rows = [(values[key], label.scores[key], record.scores[key].probs)
                for record, label, values in kept if key in label.scores]
        dimensions[key] = dimension_metrics([r[0] for r in rows], [r[1] for r in rows], kind, [r[2] for r in rows],
                                            intervals)
    complete = [(values, label) for _, label, values in kept if all(key in label.scores for key in DIMENSIONS)]
    all_right = [float(all(accuracy_value(values[key], kind) == label.scores[key] for key in DIMENSIONS))
                 for values, label in complete]
    settings = sorted({json.dumps({k: v for k, v in r.settings.items() if k not in ("device", "dtype")}, sort_keys=True)
                       for r, _, _ in kept if r.settings})
    report = {
        "n": len(kept), "score": kind, "dimensions": dimensions,
        "all_exact_acc": _percent(int(sum(all_right)), len(complete)),
        "matched": len(matched.items), "dropped_missing_score": dropped,
        "records_without_label": matched.records_without_label, "labels_without_record": matched.labels_without_record,
        "duplicates": matched.duplicates, "settings_groups": len(settings),
        "undefined": {} if complete else {"all_exact_acc": "no item has all three labels"},
        "flags": {"all_exact_acc": few_items_reason(len(complete))} if few_items_reason(len(complete)) else {},
        "ci": {"all_exact_acc": bootstrap.mean_interval(all_right, 100, DIGITS)} if intervals else {},
    }
    if pairs:
        scored = {video_key(r.video): r for r in records}  # the last record of a video wins, as in match()
        complete_records = {key: r for key, r in scored.items()
                            if all(model_value(r.scores[dim], kind) is not None for dim in DIMENSIONS)}
        report["pairwise"] = pairwise(complete_records, pairs, kind, intervals)
    return report


# ---- the table the CLI prints ------------------------------------------------------------------------

FIGURE_NAMES = {"exact_acc": "exact", "relaxed_acc": "within 1", "plcc": "PLCC", "srcc": "SRCC", "ece": "ECE",
                "brier": "Brier", "all_exact_acc": "all three exact", "acc_with_ties": "with ties",
                "acc_without_ties": "without ties", "ties_matter": "Ties Matter",
                "ties_matter_real_thresholds": "Ties Matter (real thresholds)"}
FLAG = "!"  # after a figure the notes below the table warn about


def aligned(rows: list[list[str]], rule: bool = False, indent: str = "") -> list[str]:
    """Rows of cells as lines of left-aligned columns, two spaces apart: the tables every command
    prints. With `rule`, a line of dashes under the first row (the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return [lines[0], "  ".join("-" * width for width in widths), *lines[1:]] if rule else lines


def _cell(value, suffix: str = "") -> str:
    return "-" if value is None else f"{value:g}{suffix}" if isinstance(value, float) else f"{value}{suffix}"


def figure_cell(block: dict, name: str, suffix: str = "", value=None) -> str:
    """A figure as printed: the number (with FLAG when flagged), or "undefined" where it has a reason."""
    value = block[name] if value is None else value
    if value is None:
        return "undefined" if name in block.get("undefined", {}) else "-"
    return _cell(value, suffix) + (f" {FLAG}" if name in block.get("flags", {}) else "")


def interval_cell(block: dict, name: str) -> str:
    found = block.get("ci", {}).get(name)
    return "" if found is None else f"[{found[0]:g}, {found[1]:g}]"


def figure_notes(block: dict, where: str, flag: str = FLAG) -> list[str]:
    """One line per reason: which figures of `where` are undefined, or flagged, and why."""
    lines = []
    for kind in ("undefined", "flags"):
        by_reason: dict[str, list[str]] = {}
        for name, reason in block.get(kind, {}).items():
            by_reason.setdefault(reason, []).append(FIGURE_NAMES[name])
        for reason, names in by_reason.items():
            figures = f"{where + ' ' if where else ''}{', '.join(names)}"
            lines.append(f"{figures} undefined: {reason}" if kind == "undefined" else f"{flag} {figures}: {reason}")
    return lines


def format_report(report: dict) -> str:
    short = {key: name.lower() for key, name in DIMENSION_SHORT.items()}
    names = ("exact_acc", "relaxed_acc", "plcc", "srcc", "ece", "brier")
    header = ["dimension", "n", "exact %", "relaxed %", "PLCC", "SRCC", "ECE", "Brier"]
    rows = []
    for key, m in report["dimensions"].items():
        rows.append([short[key], str(m["n"]), *(figure_cell(m, name) for name in names)])
        if any(m.get("ci", {}).get(name) for name in names):
            rows.append(["  95% CI", "", *(interval_cell(m, name) for name in names)])
    lines = [f"{counted(report['n'], 'item')}, score: {SCORE_KIND_LABELS[report['score']]}", "",
             *aligned([header] + rows, rule=True)]
    lines += ["", f"all three exact: {figure_cell(report, 'all_exact_acc', ' %')} "
                  f"{interval_cell(report, 'all_exact_acc')}".rstrip()]
    for name, block in (report.get("pairwise") or {}).items():
        tm, real = block["ties_matter"], block["ties_matter_real_thresholds"]
        figures = ", ".join(
            f"{label} {figure_cell(block, figure, ' %', value)} {interval_cell(block, figure)}".rstrip()
            for label, figure, value in ((f"with ties (margin {block['tie_margin']:g})", "acc_with_ties", None),
                                         ("without ties", "acc_without_ties", None),
                                         ("Ties Matter", "ties_matter", tm["accuracy"]),
                                         ("real thresholds only", "ties_matter_real_thresholds", real["accuracy"])))
        lines.append(f"pairwise ({name.replace('_', ' ')}, {counted(block['n'], 'pair')}): {figures}")
    notes = [f"note: {note}" for note in report_notes(report)]
    for key, m in report["dimensions"].items():
        notes += figure_notes(m, short[key])
    notes += figure_notes(report, "")
    for name, block in (report.get("pairwise") or {}).items():
        notes += figure_notes(block, f"pairwise {name.replace('_', ' ')}")
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


def report_notes(report: dict) -> list[str]:
    """What the reader should know about the items behind the figures."""
    notes = []
    dropped = report["dropped_missing_score"]
    if dropped:
        notes.append(f"{counted(dropped, 'matched item')} had no {report['score']} score in some dimension and "
                     f"{'was' if dropped == 1 else 'were'} left out, as the authors' scripts do.")
    for field, what in (("records_without_label", "match no label"), ("labels_without_record", "match no record")):
        names = report[field]
        if names:
            noun = "record" if field.startswith("records") else "label"
            verb = what.replace("match", "matches") if len(names) == 1 else what
            notes.append(f"{counted(len(names), noun)} {verb}: " + ", ".join(names[:5]) + (" …" if len(names) > 5 else ""))
    if report["duplicates"]:
        count = len(report["duplicates"])
        notes.append(f"{counted(count, 'video')} {'appears' if count == 1 else 'appear'} more than once; the last "
                     "one was used: " + ", ".join(report["duplicates"][:5]))
    if report["settings_groups"] > 1:
        notes.append(f"The records come from {report['settings_groups']} different models or settings: "
                     "their scores are mixed in these figures.")
    return notes


def json_report(report: dict, full: bool = False) -> dict:
    """The `--json` object; the confusion matrices and reliability bins only with `full`."""
    if full:
        return report
    slim = dict(report)
    slim["dimensions"] = {key: {k: v for k, v in m.items() if k not in ("confusion", "calibration")}
                          for key, m in report["dimensions"].items()}
    return slim
