"""Which generator is better: videos grouped by a column (the generator that made each, from a
labels or metadata file's other columns), ranked per dimension by the judge's expected scores or by
people's labels. Pure Python and numpy: no torch, no Gradio.

Per generator and dimension: the mean with a seeded percentile bootstrap 95% interval over its
videos. Per pair of generators: on the prompts both made videos for (each side's videos of a prompt
averaged), how often the first scores higher (a win 1, a tie 0.5), and the mean difference with
its bootstrap interval: an interval that holds 0, or fewer than MIN_SHARED_PROMPTS shared prompts,
and the two are not told apart at this size.
"""

from __future__ import annotations

import string
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from . import DIMENSION_TITLES, DIMENSIONS
from .bootstrap import seeded_mean_intervals
from .errors import UserInputError
from .explore import run_name
from .metrics import Label, aligned, counted, read_labels, video_key
from .records_io import read_records
from .results import ScoreResult
from .runs import DIGITS, RESAMPLES, SEED, bounded_resamples  # the same bootstrap as two runs'
MIN_SHARED_PROMPTS = 5
MAX_GENERATORS = 30  # a column of more values is not a generator column (and its pairs would cost minutes)
TIE = 1e-9  # two per-prompt means closer than this tie
SOURCES = {"model": "VideoScore2's expected scores", "people": "people's labels"}
DISTINGUISHABLE, NOT_DISTINGUISHABLE, TOO_FEW = "distinguishable", "not distinguishable", "too few shared prompts"


@dataclass(frozen=True)
class Judged:
    """One video of one generator: its prompt and its value per dimension (None: none)."""

    generator: str
    prompt: str
    video: str
    values: dict[str, float | None]


def judged_videos(records: list[ScoreResult], groups: dict[str, Label], column: str, source: str = "model",
                  people: dict[str, Label] | None = None) -> tuple[list[Judged], dict]:
    """The videos to rank and what was left out: `groups` by video_key carry `column` (Label.extra:
    a labels file's other columns, or a `video,generator` metadata file's); `source` "model" ranks the
    records' expected scores (one run only: records of several runs must not be mixed), "people" the
    labels of the same videos (`people`, by default `groups`). The last record of a (video, prompt) counts."""
    people = groups if people is None else people
    if source not in SOURCES:
        raise UserInputError(f"Rank by {' or '.join(SOURCES)}, not {source!r}.")
    runs = sorted({run_name(record) for record in records if record.error is None})
    if source == "model" and len(runs) > 1:
        raise UserInputError(f"These records come from {len(runs)} runs ({'; '.join(runs[:3])}"
                             f"{'; …' if len(runs) > 3 else ''}): rank generators within one run.")
    left_out = {"failed": 0, "no_group": 0, "no_score": 0, "repeated": 0}
    kept: dict[tuple[str, str], Judged] = {}
    for record in records:
        grouped = groups.get(video_key(record.video))
        group = (grouped.extra.get(column) or "").strip() if grouped else ""
        if source == "model" and record.error is not None:
            left_out["failed"] += 1
            continue
        if not group:
            left_out["no_group"] += 1
            continue
        if source == "model":
            values = {key: record.scores[key].expected for key in DIMENSIONS}
        else:
            label = people.get(video_key(record.video))
            values = {key: label.scores.get(key) if label else None for key in DIMENSIONS}
        if all(value is None for value in values.values()):
            left_out["no_score"] += 1
            continue
        key = (video_key(record.video), record.prompt)
        left_out["repeated"] += key in kept
        kept[key] = Judged(group, record.prompt.strip(), record.video, values)
    return list(kept.values()), left_out


def group_letters(order: list[str], apart: set[frozenset]) -> dict[str, str]:
    """Letters for generators ranked in `order` (a compact letter display): each largest group of
    generators of which no two are `apart` (distinguishable) gets a letter, so two generators share
    a letter exactly when they are not told apart. Letters follow the groups' best-ranked member."""
    position = {name: n for n, name in enumerate(order)}
    near = {name: {other for other in order if other != name and frozenset((name, other)) not in apart}
            for name in order}
    groups: list[list[str]] = []

    def grow(clique: set, candidates: set, excluded: set) -> None:  # Bron-Kerbosch with a pivot
        if not candidates and not excluded:
            groups.append(sorted(clique, key=position.get))
            return
        pivot = max(candidates | excluded, key=lambda name: len(near[name] & candidates))
        for name in sorted(candidates - near[pivot], key=position.get):
            grow(clique | {name}, candidates & near[name], excluded & near[name])
            candidates = candidates - {name}
            excluded = excluded | {name}

    grow(set(), set(order), set())
    groups.sort(key=lambda group: [position[name] for name in group])
    letters = {name: "" for name in order}
    for count, group in enumerate(groups):
        for name in group:
            letters[name] += string.ascii_lowercase[count % 26] * (count // 26 + 1)
    return letters


def _per_prompt(videos: list[Judged], key: str) -> dict[str, float]:
    """A generator's mean value per prompt, over its videos of that prompt that have one."""
    sums: dict[str, list[float]] = defaultdict(list)
    for video in videos:
        if video.values[key] is not None:
            sums[video.prompt].append(video.values[key])
    return {prompt: float(np.mean(values)) for prompt, values in sums.items()}


def pair_figures(first: str, second: str, difference: np.ndarray, ci: list | None) -> dict:
    """`first` against `second` on their shared prompts: `difference` first − second per prompt, and
    the interval of its mean."""
    shared = len(difference)
    wins, ties = int((difference > TIE).sum()), int((np.abs(difference) <= TIE).sum())
    verdict = (TOO_FEW if shared < MIN_SHARED_PROMPTS or ci is None else
               NOT_DISTINGUISHABLE if ci[0] <= 0 <= ci[1] else DISTINGUISHABLE)
    return {"a": first, "b": second, "shared_prompts": shared, "a_wins": wins, "ties": ties,
            "b_wins": shared - wins - ties,
            "win_rate": round((wins + 0.5 * ties) / shared, DIGITS) if shared else None,
            "mean_difference": round(float(difference.mean()), DIGITS) if shared else None, "ci": ci,
            "verdict": verdict}


def _values(videos: list[Judged], key: str) -> np.ndarray:
    return np.array([v.values[key] for v in videos if v.values[key] is not None], dtype=np.float64)


def ranking_of(by_generator: dict[str, list[Judged]], key: str, intervals: dict) -> list[dict]:
    """One dimension's generators by mean, best first (equal means by name)."""
    rows = []
    for name, videos in by_generator.items():
        values = _values(videos, key)
        if values.size:
            rows.append({"generator": name, "videos": int(values.size), "mean": round(float(values.mean()), DIGITS),
                         "ci": intervals[name][key]})
    rows.sort(key=lambda row: (-row["mean"], row["generator"]))
    for place, row in enumerate(rows, start=1):
        row["rank"] = place
    return rows


def all_pairs(by_generator: dict[str, list[Judged]], places: dict, seed: int, resamples: int) -> dict:
    """Per dimension, every pair of ranked generators, the better ranked first. A pair's three
    dimensions are resampled together (the same draws as each alone: drawing is most of the cost)."""
    per_prompt = {(name, key): _per_prompt(videos, key) for name, videos in by_generator.items() for key in DIMENSIONS}
    pairs: dict[str, list] = {key: [] for key in DIMENSIONS}
    names = sorted(by_generator)
    for n, x in enumerate(names):
        for y in names[n + 1:]:
            oriented, differences = {}, {}
            for key in DIMENSIONS:
                if x in places[key] and y in places[key]:
                    first, second = (x, y) if places[key][x] < places[key][y] else (y, x)
                    a, b = per_prompt[first, key], per_prompt[second, key]
                    oriented[key] = (first, second)
                    differences[key] = np.array([a[p] - b[p] for p in sorted(set(a) & set(b))], dtype=np.float64)
            intervals = seeded_mean_intervals(differences, seed, resamples, DIGITS)
            for key, (first, second) in oriented.items():
                pairs[key].append(pair_figures(first, second, differences[key], intervals[key]))
    for key in DIMENSIONS:
        pairs[key].sort(key=lambda pair: (places[key][pair["a"]], places[key][pair["b"]]))
    return pairs


def rank_generators(videos: list[Judged], column: str, source: str = "model", left_out: dict | None = None,
                    seed: int = SEED, resamples: int = RESAMPLES) -> dict:
    """Every figure of the ranking, JSON-ready: what the CLI's --json prints and the Explore tab shows."""
    resamples = bounded_resamples(resamples)
    by_generator: dict[str, list[Judged]] = defaultdict(list)
    for video in videos:
        by_generator[video.generator].append(video)
    if len(by_generator) > MAX_GENERATORS:
        raise UserInputError(f"The column {column!r} has {len(by_generator):,} values: generators are ranked "
                             f"{MAX_GENERATORS} at most. Choose the column that names the generator.")
    if not by_generator:
        raise UserInputError(f"No video has a value in the column {column!r} and a score: nothing to rank.")
    by_generator = dict(sorted(by_generator.items()))
    # A generator's three dimensions are resampled together, as a pair's are.
    intervals = {name: seeded_mean_intervals({key: _values(videos, key) for key in DIMENSIONS}, seed, resamples, DIGITS)
                 for name, videos in by_generator.items()}
    rankings = {key: ranking_of(by_generator, key, intervals) for key in DIMENSIONS}
    places = {key: {row["generator"]: row["rank"] for row in rows} for key, rows in rankings.items()}
    pairs = all_pairs(by_generator, places, seed, resamples)
    dimensions = {}
    for key in DIMENSIONS:
        apart = {frozenset((pair["a"], pair["b"])) for pair in pairs[key] if pair["verdict"] == DISTINGUISHABLE}
        letters = group_letters([row["generator"] for row in rankings[key]], apart)
        dimensions[key] = {"ranking": [{**row, "group": letters[row["generator"]]} for row in rankings[key]],
                           "pairs": pairs[key]}
    return {"by": column, "scores": source, "seed": seed, "resamples": resamples,
            "videos": len(videos), "prompts": len({video.prompt for video in videos}),
            "generators": len(by_generator), "left_out": left_out or {},
            "min_shared_prompts": MIN_SHARED_PROMPTS, "dimensions": dimensions}


def summary_sentence(report: dict) -> str:
    """What was ranked, in one sentence (the tab and the CLI)."""
    left = report["left_out"]
    parts = [f"{counted(report['videos'], 'video')} of {counted(report['generators'], 'generator')} "
             f"(column {report['by']!r}) over {counted(report['prompts'], 'prompt')}, by {SOURCES[report['scores']]}"]
    reasons = {"failed": "failed", "no_group": "with no value in that column", "no_score": "with no score",
               "repeated": "repeated (the last one counts)"}
    dropped = [f"{counted(left[name], 'record')} {words}" for name, words in reasons.items() if left.get(name)]
    if dropped:
        parts.append("left out: " + ", ".join(dropped))
    return "; ".join(parts) + "."


def _interval(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "–"


RANKING_HEADERS = ["Rank", "Generator", "Videos", "Mean", "95% interval", "Group"]
PAIR_HEADERS = ["A", "B", "Shared prompts", "A wins %", "A − B", "95% interval", "Verdict"]


def ranking_rows(block: dict) -> list[list[str]]:
    return [[str(row["rank"]), row["generator"], f"{row['videos']:,}", f"{row['mean']:.3f}", _interval(row["ci"]),
             row["group"]] for row in block["ranking"]]


def pair_rows(block: dict) -> list[list[str]]:
    return [[pair["a"], pair["b"], f"{pair['shared_prompts']:,}",
             "–" if pair["win_rate"] is None else f"{100 * pair['win_rate']:.1f}",
             "–" if pair["mean_difference"] is None else f"{pair['mean_difference']:+.3f}", _interval(pair["ci"]),
             pair["verdict"]] for pair in block["pairs"]]


def format_ranking(report: dict) -> str:
    """The readable tables `rank-generators` prints without --json."""
    lines = [summary_sentence(report),
             f"Means with a percentile bootstrap 95% interval (seed {report['seed']}, {report['resamples']:,} "
             f"resamples). Generators sharing a letter are not told apart: the interval of their mean difference on "
             f"shared prompts holds 0, or they share fewer than {report['min_shared_prompts']} prompts."]
    for key in DIMENSIONS:
        block = report["dimensions"][key]
        lines += ["", DIMENSION_TITLES[key]] + aligned([RANKING_HEADERS] + ranking_rows(block), indent="  ")
        if block["pairs"]:
            lines += ["  pairs, on shared prompts (A wins: a win 1, a tie 0.5):"]
            lines += aligned([PAIR_HEADERS] + pair_rows(block), indent="  ")
    return "\n".join(lines)


def rank_files(record_paths: list, labels_path, column: str, source: str = "model", seed: int = SEED,
               resamples: int = RESAMPLES) -> dict:
    """`rank-generators RECORDS --by COLUMN --labels FILE`: the records of one run, grouped by the
    column of FILE (people's scores in it optional, needed for `source` "people")."""
    records = [record for path in record_paths for record in read_records(path)]
    groups = {video_key(label.video): label for label in read_labels(labels_path, scores_required=False)}
    column = column.strip()
    if not any(column in label.extra for label in groups.values()):
        column = column.lower()  # a CSV's headers are read in lower case
    videos, left_out = judged_videos(records, groups, column, source)
    return rank_generators(videos, column, source, left_out, seed=seed, resamples=resamples)
