"""Self-consistency (#14, item 2): K sampled answers sharing one prefill, how far they agree, the
record that holds them, the CLI's --samples."""

import json
import re

import pytest

from vs2demo import DIMENSIONS
from vs2demo.__main__ import main
from vs2demo.backends import Generations
from vs2demo.errors import UserInputError
from vs2demo.jobs import CancelToken
from vs2demo.results import DimensionScore, Sample, ScoreResult
from vs2demo.scoring import Scorer
from vs2demo.results import agreement
from vs2demo.self_consistency import combined_scores, representative, summary_sentence
from vs2demo.settings import ScoreOptions, Settings, request_options
from vs2demo.ui.controls import ASSETS
from vs2demo.ui.render import agreement_html

PROMPT = "A red ball rolls and bounces across a grey studio floor."


def sample(visual, alignment, physical, probs=None) -> Sample:
    scores = {}
    for key, score in zip(DIMENSIONS, (visual, alignment, physical)):
        dim_probs = probs or tuple(0.9 if level == score else 0.025 for level in range(1, 6)) if score else None
        scores[key] = DimensionScore.from_probs(score, dim_probs)
    return Sample(text=f"<think>{visual}{alignment}{physical}</think>", rationale="r", scores=scores)


def test_a_video_scored_4_4_4_then_3_4_1_is_unstable_in_physics_only():
    samples = [sample(4, 4, 4), sample(3, 4, 1), sample(4, 4, 4), sample(4, 4, 4)]
    summary = agreement(samples)
    physical = summary["physical_consistency"]
    assert physical.counts == (1, 0, 0, 3, 0) and physical.mode == 4 and physical.agreement == 0.75
    assert physical.unstable and physical.spread == 3
    visual = summary["visual_quality"]
    assert visual.counts == (0, 0, 1, 3, 0) and not visual.unstable  # 3 and 4: one apart, 75% agree
    assert summary["text_alignment"].agreement == 1.0 and summary["text_alignment"].expected_sd == 0.0
    combined = combined_scores(samples)
    assert combined["physical_consistency"].score == 4
    mean = sum(s.scores["physical_consistency"].expected for s in samples) / 4
    assert combined["physical_consistency"].expected == pytest.approx(mean, abs=1e-3)
    assert representative(samples) == 0
    assert summary_sentence(samples).endswith("Unstable: physical/common-sense consistency.")


def test_no_agreement_and_missing_scores():
    samples = [sample(1, 2, None), sample(3, 2, None), sample(5, 2, None)]
    summary = agreement(samples)
    assert summary["visual_quality"].mode == 1 and summary["visual_quality"].agreement == pytest.approx(1 / 3)
    assert summary["visual_quality"].unstable
    assert summary["physical_consistency"].mode is None and not summary["physical_consistency"].unstable
    assert combined_scores(samples)["physical_consistency"].score is None
    assert "never scored" in summary_sentence(samples)


def test_asking_again_needs_sampling_and_at_most_16():
    with pytest.raises(UserInputError, match="needs sampling"):
        request_options(ScoreOptions(), samples=4)
    with pytest.raises(UserInputError, match="samples"):
        request_options(ScoreOptions(), samples=17, do_sample=True)
    assert request_options(ScoreOptions(), samples=4, do_sample=True).samples == 4


@pytest.fixture(scope="module")
def engine(toy_model_dir):
    return Scorer(Settings(model=str(toy_model_dir), quant="none", device="cpu")).start_loading(background=False)


def test_samples_share_one_prefill_and_greedy_rows_equal_the_single_answer(engine, teleport_clip):
    """The shared prefill (a copied cache) is right: decoded greedily, each of 3 rows writes what a
    single greedy run writes, with the same probabilities; the vision encoder ran once."""
    backend = engine.backend()
    video = engine.sample(teleport_clip, ScoreOptions(), backend.info, CancelToken())
    calls = []
    hook = backend.model.model.visual.register_forward_hook(lambda *args: calls.append(1))
    try:
        single = list(backend.generate(video, PROMPT, ScoreOptions()))[-1]
        calls.clear()
        # Not a valid request (validated() refuses greedy K > 1), but the backend's own path.
        rows = list(backend.generate(video, PROMPT, ScoreOptions(samples=3)))[-1]
    finally:
        hook.remove()
    assert isinstance(rows, Generations) and len(rows.samples) == 3 and len(calls) == 1
    for row in rows.samples:
        assert row.text == single.text and row.new_tokens == single.new_tokens
        assert [step.start for step in row.digit_steps] == [step.start for step in single.digit_steps]
        for mine, theirs in zip(row.digit_steps, single.digit_steps):
            assert mine.probs == pytest.approx(theirs.probs, abs=1e-6)
        assert row.tokens.p == pytest.approx(single.tokens.p, abs=1e-3)


@pytest.mark.slow  # 7 s: the record's parts are tested above on constructed samples and rows
def test_four_samples_at_a_seed_are_repeatable_and_the_record_holds_them(engine):
    # The shipped example clip: at 1.5 and seed 1 the toy's first sample loops, the others do not.
    clip = ASSETS / "red_ball_clean.mp4"
    options = request_options(ScoreOptions(), samples=4, do_sample=True, temperature=1.5, seed=1)
    first = engine.score_to_result(clip, PROMPT, options)
    second = engine.score_to_result(clip, PROMPT, options)
    assert first.error is None, first.error
    assert len(first.samples) == 4 and first.samples == second.samples
    assert len({s.text for s in first.samples}) > 1, "at 1.5 the toy's samples should differ"
    record = first.to_dict()
    assert record["settings"]["samples"] == 4
    assert set(record["agreement"]) == set(DIMENSIONS)
    assert sum(record["agreement"]["visual_quality"]["counts"]) == 4
    assert record["timings"]["new_tokens"] == sum(s.new_tokens for s in first.samples)
    shown = representative(first.samples)
    assert first.text == first.samples[shown].text and first.tokens.text == first.text
    assert ScoreResult.from_dict(json.loads(first.to_json())).samples == first.samples
    # A sample that loops is stopped alone; the others write on to their end.
    looped = [s for s in first.samples if "loop" in s.checks]
    assert looped and any("loop" not in s.checks and s.error is None for s in first.samples)
    page = agreement_html(first)
    assert len(re.findall(r"class='vs2-sample( shown)?'", page)) == 4 and "Sample 4" in page


@pytest.mark.slow  # 4 s: two model loads; the options and records are tested above
def test_the_cli_asks_again_with_samples(toy_model_dir, clean_clip, tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    argv = ["score", str(clean_clip), "--prompt", PROMPT, "--model", str(toy_model_dir), "--quant", "none",
            "--device", "cpu", "--no-store", "--samples", "4", "--temperature", "0.7", "--seed", "1",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "agreement:" in printed and "4 samples:" in printed
    record = json.loads(out.read_text().splitlines()[0])
    assert len(record["samples"]) == 4 and record["settings"]["do_sample"] is True
    assert main(argv[:-2] + ["--out", str(tmp_path / "again.jsonl")]) == 0
    again = json.loads((tmp_path / "again.jsonl").read_text().splitlines()[0])
    assert [s["text"] for s in again["samples"]] == [s["text"] for s in record["samples"]]
