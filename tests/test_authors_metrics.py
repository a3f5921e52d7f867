"""`python -m vs2demo metrics --json` against the authors' own evaluation code, transcribed below from
TIGER-AI-Lab/VideoScore2 (each function names its source), on one set of records that holds what
made the two part before: scores without probabilities, soft scores on a half, pairs a hair either side
of the tie margin, and probabilities whose argmax is a near tie. Every figure must be equal, to the
last digit, for the integer, normed and expected scores, with and without ties."""

from __future__ import annotations

import json
import random

import pytest
from scipy.stats import pearsonr, spearmanr

from vs2demo import DIMENSIONS
from vs2demo.__main__ import main
from vs2demo.results import DimensionScore, ScoreResult

ROUND_DIGIT = 3  # eval/get_acc_corr.py


# ---- the authors' code, as written there ---------------------------------------------------------------

def ll_based_soft_score_normed(probs_list):
    """vs2_inference.py, ll_based_soft_score_normed: from p(1..5) at the score's token."""
    scores_list = [1, 2, 3, 4, 5]
    total_prob = sum(probs_list)
    max_prob = max(probs_list)
    best_score = scores_list[probs_list.index(max_prob)]
    normalized_prob = max_prob / total_prob if total_prob > 0 else 0
    return round(best_score * normalized_prob, 4)


def ll_based_soft_score_weighted(probs_list):
    """eval/eval_methods/vs2_float_weighted.py, ll_based_soft_score_weighted."""
    scores_list = [1, 2, 3, 4, 5]
    total_prob = sum(probs_list)
    norm_probs = [p / total_prob for p in probs_list]
    return sum(s * p for s, p in zip(scores_list, norm_probs))


def _remove_null_scores(gts, models):
    """eval/get_acc_corr.py, _remove_null_scores: an item missing a model score in any dimension goes."""
    kept_gt, kept_model = [[], [], []], [[], [], []]
    for gt, model in zip(zip(*gts), zip(*models)):
        if None not in model:
            for d in range(3):
                kept_gt[d].append(gt[d])
                kept_model[d].append(model[d])
    return kept_gt, kept_model


def _compute_accuracy(pred, ground_truth):
    """eval/get_acc_corr.py, _compute_accuracy."""
    correct = sum(p == gt for p, gt in zip(pred, ground_truth))
    return round(correct / len(ground_truth) * 100, ROUND_DIGIT)


def _compute_accuracy_relaxed(pred, ground_truth):
    """eval/get_acc_corr.py, _compute_accuracy_relaxed."""
    correct = sum(abs(p - gt) <= 1 for p, gt in zip(pred, ground_truth))
    return round(correct / len(ground_truth) * 100, ROUND_DIGIT)


def _acc_whole_item(pred1, pred2, pred3, gt1, gt2, gt3):
    """eval/get_acc_corr.py, _acc_whole_item."""
    matched = sum(1 for p1, p2, p3, g1, g2, g3 in zip(pred1, pred2, pred3, gt1, gt2, gt3)
                  if abs(p1 - g1) + abs(p2 - g2) + abs(p3 - g3) <= 0)
    return round(matched / len(gt1) * 100, ROUND_DIGIT)


def _compute_spcc(pred, ground_truth):
    """eval/get_acc_corr.py, _compute_spcc."""
    return round(float(spearmanr(pred, ground_truth)[0]) * 100, ROUND_DIGIT)


def _compute_plcc(pred, ground_truth):
    """eval/get_acc_corr.py, _compute_plcc."""
    return round(float(pearsonr(pred, ground_truth)[0]) * 100, ROUND_DIGIT)


def judge_equal_for_diverse(method, score1, score2, with_ties):
    """eval/get_pairwise_acc.py, judge_equal_for_diverse, for VideoScore2's two methods."""
    if not with_ties:
        return 1 if score1 > score2 else -1 if score1 < score2 else 0
    margin = {"vs2": 0.5, "vs2_float": 0.001}[method]
    if score1 - score2 > margin:
        return 1
    if score1 - score2 < -margin:
        return -1
    return 0


def pairwise_accuracy(method, score_dict, rows, column, with_ties):
    """eval/get_pairwise_acc.py, the VideoGen-RewardBench loop: `column` "VQ" compares visual scores,
    "Overall" the sum of the three; labels "A", "B", "same"."""
    correct = total = 0
    for row in rows:
        a, b = row["path_A"], row["path_B"]
        if a not in score_dict or b not in score_dict:
            continue
        if not with_ties and row[column] == "same":
            continue
        total += 1
        if column == "VQ":
            s1, s2 = score_dict[a]["v_score_model"], score_dict[b]["v_score_model"]
        else:
            s1 = score_dict[a]["v_score_model"] + score_dict[a]["t_score_model"] + score_dict[a]["p_score_model"]
            s2 = score_dict[b]["v_score_model"] + score_dict[b]["t_score_model"] + score_dict[b]["p_score_model"]
        verdict = judge_equal_for_diverse(method, s1, s2, with_ties)
        correct += {1: "A", -1: "B", 0: "same"}[verdict] == row[column]
    return float(f"{correct / total * 100:.3f}")  # as they print it


# ---- one set of records holding every hard case -------------------------------------------------------

def shifted(probs, amount):
    """p moved from "4" to "5": the expected value rises by `amount` (to float precision)."""
    return probs[:3] + (probs[3] - amount, probs[4] + amount)


def build_set(tmp_path):
    rng = random.Random(23)
    base = []
    for _ in range(16):
        weights = [rng.random() ** 2 for _ in range(5)]
        base.append(tuple(w / sum(weights) for w in weights))
    special = [
        (0.0, 0.0, 0.49996, 0.50004, 0.0),  # argmax a near tie: rounded to 4 decimals it was 3, not 4
        (0.0, 0.0, 0.5000000001, 0.4999999999, 0.0),
        (0.0, 0.5, 0.5, 0.0, 0.0),  # expected exactly 2.5: round() gives 2
        (0.1, 0.1, 0.1, 0.2, 0.5),  # normed 5 x 0.5 = 2.5
        (0.05, 0.05, 0.1, 0.1, 0.7),  # normed 3.5
        (0.2, 0.2, 0.2, 0.2, 0.2),  # all tie: the first, "1"
    ]
    records, labels, pairs = [], [], []
    number = 0

    def add(probs_by_dim, scores=None):
        nonlocal number
        name = f"v{number:03d}"
        number += 1
        dims = {}
        for d, key in enumerate(DIMENSIONS):
            probs = probs_by_dim[d]
            score = (scores or {}).get(key, "argmax")
            if score == "argmax":
                score = None if probs is None else probs.index(max(probs)) + 1
            dims[key] = DimensionScore.from_probs(score, probs)
        # Only the authors' reading keeps a number off the scale (their regex's), and says so.
        off_scale = any(dim.score is not None and not 1 <= dim.score <= 5 for dim in dims.values())
        records.append(ScoreResult(video=f"{name}.mp4", prompt="p", model="m", scores=dims,
                                   settings={"reading": "authors"} if off_scale else {}))
        labels.append((name, [rng.randint(1, 5) for _ in DIMENSIONS]))
        return name

    for i, probs in enumerate(base + special):
        left = add([probs, base[(i + 3) % len(base)], special[i % len(special)]])
        # Pairs a hair either side of both margins (0.001 on soft scores; the normed score moves 4x
        # the shift where "4" is the argmax), and on them.
        for amount in (0.001, 0.001 + 1e-12, 0.001 - 1e-12, 0.00025, 0.00025 + 1e-13, 0.0005):
            if probs[3] > 0.01 and probs[3] - amount > probs[4] + amount:
                right = add([shifted(probs, amount), base[(i + 3) % len(base)], special[i % len(special)]])
                pairs.append((left, right, rng.choice(["a", "b", "tie"]), rng.choice(["a", "b", "tie"])))
    # Scores without probabilities (soft scores missing, the integer there), none at all, and a number
    # off the scale the authors' regex keeps.
    add([None, base[0], base[1]], {"visual_quality": 4})
    add([base[2], None, base[3]], {"text_alignment": 2})
    add([None, None, None], {key: None for key in DIMENSIONS})
    add([base[4], base[5], base[6]], {"visual_quality": 8})
    names = [name for name, _ in labels]
    for _ in range(40):
        a, b = rng.sample(names, 2)
        pairs.append((a, b, rng.choice(["a", "b", "tie"]), rng.choice(["a", "b", "tie"])))

    (tmp_path / "records.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    (tmp_path / "labels.csv").write_text("video,visual_quality,text_alignment,physical_consistency\n"
                                         + "".join(f"{n},{v},{t},{p}\n" for n, (v, t, p) in labels))
    (tmp_path / "pairs.csv").write_text("video_a,video_b,preference,visual_quality\n"
                                        + "".join(f"{a},{b},{o},{v}\n" for a, b, o, v in pairs))
    return labels, pairs


def authors_scores(tmp_path, kind):
    """Each record's v/t/p score as the authors' pipeline has it, read from the records file."""
    items = {}
    for line in (tmp_path / "records.jsonl").read_text().splitlines():
        record = json.loads(line)
        values = []
        for key in DIMENSIONS:
            dim = record["scores"][key]
            if dim["score"] is None or (kind != "int" and dim["probs"] is None):
                values.append(None)
            elif kind == "int":
                values.append(dim["score"])
            else:
                soft = ll_based_soft_score_normed if kind == "normed" else ll_based_soft_score_weighted
                values.append(soft(dim["probs"]))
        items[record["video"].removesuffix(".mp4")] = dict(zip(("v_score_model", "t_score_model", "p_score_model"),
                                                              values))
    return items


@pytest.mark.parametrize("kind", ["int", "normed", "expected"])
def test_every_figure_equals_the_authors_code_on_the_same_records(kind, tmp_path, capsys):
    labels, pairs = build_set(tmp_path)
    code = main(["metrics", str(tmp_path / "records.jsonl"), "--labels", str(tmp_path / "labels.csv"),
                 "--score", kind, "--pairs", str(tmp_path / "pairs.csv"), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)

    scores = authors_scores(tmp_path, kind)
    gts = [[label[d] for _, label in labels] for d in range(3)]
    models = [[scores[name][field] for name, _ in labels] for field in ("v_score_model", "t_score_model", "p_score_model")]
    gts, models = _remove_null_scores(gts, models)
    raw = models
    if kind != "int":  # get_acc, method "vs2_float": rounded and clipped for the accuracies only
        models = [[int(min(5, max(1, round(x)))) for x in column] for column in models]
    assert report["n"] == len(gts[0]) and report["dropped_missing_score"] == len(labels) - len(gts[0])
    for d, key in enumerate(DIMENSIONS):
        figures = report["dimensions"][key]
        assert figures["exact_acc"] == _compute_accuracy(models[d], gts[d])
        assert figures["relaxed_acc"] == _compute_accuracy_relaxed(models[d], gts[d])
        assert figures["plcc"] == _compute_plcc(raw[d], gts[d])
        assert figures["srcc"] == _compute_spcc(raw[d], gts[d])
    assert report["all_exact_acc"] == _acc_whole_item(*models, *gts)

    method = "vs2" if kind == "int" else "vs2_float"
    score_dict = {name: item for name, item in scores.items() if None not in item.values()}
    rows = [{"path_A": a, "path_B": b, "Overall": {"a": "A", "b": "B", "tie": "same"}[o],
             "VQ": {"a": "A", "b": "B", "tie": "same"}[v]} for a, b, o, v in pairs]
    for dimension, column in (("overall", "Overall"), ("visual_quality", "VQ")):
        block = report["pairwise"][dimension]
        assert block["acc_with_ties"] == pairwise_accuracy(method, score_dict, rows, column, with_ties=True)
        assert block["acc_without_ties"] == pairwise_accuracy(method, score_dict, rows, column, with_ties=False)
    # The hard cases are really in the set: soft pairs on both sides of the margin, a half.
    if kind != "int":
        near = [abs(abs(sum(score_dict[a].values()) - sum(score_dict[b].values())) - 0.001)
                for a, b, *_ in pairs if a in score_dict and b in score_dict]
        assert sum(gap < 1e-9 for gap in near) >= 3
        assert any(value in (1.5, 2.5, 3.5) for column in raw for value in column)
