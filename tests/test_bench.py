"""The benchmark's code, end to end on small inputs: no timing is asserted (speed lives in
`python -m tools.bench` and BENCHMARKS.md), only that every part runs and reports what it should."""

from __future__ import annotations

import pytest

from tools import bench

TINY_CLIP = bench.ClipSpec("2 s 224x168", 2, 224, 168, fps=8)
TINY_PIXELS = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def gpu_report(workdir):
    """The GPU part's code on the CPU: a tiny configuration instead of VideoScore2's, 4-bit and bf16."""
    return bench.run_gpu_part(workdir, sizes=bench.ModelSizes.tiny(), variants=("4bit", "bf16"), clip=TINY_CLIP,
                              new_tokens=24, device="cpu", isolate=False, warmup_tokens=4, **TINY_PIXELS)


@pytest.mark.slow  # builds and loads two models: 5 s of the default run's 3 minutes
def test_the_gpu_part_runs_end_to_end_on_a_cpu(gpu_report):
    for name in ("4bit", "bf16"):
        row = gpu_report["variants"][name]
        assert "error" not in row, row
        assert row["new_tokens"] == 24  # min_new_tokens forces the length a random model would not reach
        # 2 s at 2 fps in the tiny pixel budget: 4 frames of 112x84; two frames make one time step and
        # 2x2 patches of 14 px one token.
        assert row["frames"] == "4 x 112x84"
        assert row["visual_tokens"] == 4 // 2 * (84 // 28) * (112 // 28) and row["prompt_tokens"] > row["visual_tokens"]
        # The vision encoder runs inside the time to first token (the report's prefill is the rest).
        assert 0 < row["vision_s"] < row["first_token_s"]
    variants = gpu_report["variants"]
    assert variants["4bit"]["footprint_bytes"] < variants["bf16"]["footprint_bytes"]  # really loaded in 4 bits
    assert variants["bf16"]["dtype"] == "bfloat16"
    # Inside one judgement: the 4-bit run again without token confidence, and 4 samples in one call.
    assert variants["4bit"]["decode_tokens_per_s_no_confidence"] > 0
    assert variants["4bit"]["samples4_tokens"] == 4 * 24

    section = bench.render_gpu_section(gpu_report)
    for label in ("load time", "peak GPU memory", "time to first token", "vision encoder", "decode tokens per second",
                  "visual tokens", "output_scores", "GPU targets", "| 4bit | bf16 |", "without token confidence",
                  "4 samples at 0.7"):
        assert label in section, label
    assert "failed" not in section


@pytest.mark.slow  # builds and loads two models: 5 s of the default run's 3 minutes
def test_the_model_is_built_once_and_loaded_like_a_checkpoint(gpu_report, workdir):
    built = gpu_report["built"]
    again = bench.build_random_model(built["path"], bench.ModelSizes.tiny(), "cpu", **TINY_PIXELS)
    assert again["reused"] and again["parameters"] == built["parameters"]


def test_videoscore2_sizes_are_the_real_models():
    sizes = bench.ModelSizes.videoscore2()
    assert sizes.kv_bytes_per_token == 56 * 1024  # REFERENCE.md: about 56 KiB per token
    assert abs(bench.count_parameters(sizes) - 8.29e9) < 0.01e9


@pytest.mark.slow  # decodes a clip five ways: the sampling code itself is tested in test_video.py
def test_frame_sampling_part_on_a_small_clip(workdir):
    from vs2demo import video

    real_resize = video._resize
    spec = bench.ClipSpec("3 s 320x240", 3, 320, 240, fps=12)
    clip = bench.make_clip(spec, workdir / "clips")
    [row] = bench.measure_sampling([(spec, clip)], repeats=1, memory=False)
    assert "error" not in row, row
    assert row["same_frames"] and row["frames"] == 6 and row["backends"] == ["pyav"]
    assert {name: len(times) for name, times in row["times"].items()} == {"project": 1, "transformers": 1, "resize": 1,
                                                                         "decode": 1}
    assert video._resize is real_resize  # timing the decoding alone put the real resize back
    text = "\n".join(bench.render_sampling([row]))
    assert "3 s 320x240" in text and "bit-identical" in text and "decoding alone" in text
    [target] = bench.sampling_targets([row])  # the ratio; the 10-minute clip's targets need that clip
    assert f"{row['ratio_best']:.2f}x" in target["figure"]

    # What each memory subprocess runs (here in this process), and how a failing one reports.
    task = {"path": str(clip), "fps": 2.0, "max_frames": 64, "indices": list(range(0, 36, 7))[:6]}
    kept = {}
    for loader in ("baseline", "project", "transformers"):
        measured = bench._sampling_memory_child({**task, "loader": loader})
        assert "maxrss_bytes" in measured  # what the parent subtracts the baseline from
        kept[loader] = measured["kept_bytes"]
    # The project keeps the frames at the model's size; transformers' loader, the same 6 at 320x240.
    assert kept == {"baseline": 0, "project": row["kept_bytes"], "transformers": 6 * 240 * 320 * 3}
    with pytest.raises(bench.ChildFailed, match="unknown task"):
        bench.run_child({"task": "no such task"})


def test_each_target_is_met_or_missed_by_its_figure():
    """The verdicts the report prints, on figures either side of each target."""
    def sampling(clip, ratio, project_s=1.0, **more):
        return {"clip": clip, "ratio_best": ratio, "ratio_median": ratio, "times": {"project": [project_s]},
                "project_best": project_s, "project_median": project_s, **more}

    def verdicts(targets):
        return [target["met"] for target in targets]

    # At most as slow as transformers' loader.
    assert verdicts(bench.sampling_targets([sampling("a", 0.6), sampling("b", 1.0), sampling("c", 1.3)])) == [True, True, False]
    assert bench.sampling_targets([{"clip": "a", "error": "decord failed"}]) == []  # nothing measured, no verdict
    # The 10-minute clip: under 2 s, and a peak within 1.25x + 16 MiB of the control clip's (141 MiB here).
    control = {"clip": "32 s 320x180", "file_bytes": 2 * bench.MIB, "peak_bytes": 100 * bench.MIB, "kept_bytes": bench.MIB}
    long = {"frames": 64, "kept_bytes": bench.MIB, "file_bytes": 50 * bench.MIB, "all_frames_bytes": 900 * bench.MIB,
            "control": control}
    label = bench.CLIP_10MIN_LOWRES.label
    assert verdicts(bench.sampling_targets([sampling(label, 0.5, 1.9, project_peak_bytes=140 * bench.MIB, **long)])) == [
        True, True, True]
    assert verdicts(bench.sampling_targets([sampling(label, 0.5, 2.0, project_peak_bytes=142 * bench.MIB, **long)])) == [
        True, False, False]

    # The GPU targets: 4-bit peak at most 8 GiB, decode at least 0.8x bf16 (and for the fastest 4-bit
    # variant, when that is another one), first token under 1 s.
    def gpu(peak_gib, q_speed, static_speed, ttft):
        return {"new_tokens": 1024, "variants": {
            "4bit": {"variant": "4bit", "quant": "4bit", "peak_bytes": peak_gib * bench.GIB,
                     "decode_tokens_per_s": q_speed, "first_token_s": ttft},
            "bf16": {"variant": "bf16", "quant": "none", "decode_tokens_per_s": 40.0},
            "4bit+static": {"variant": "4bit+static", "quant": "4bit", "decode_tokens_per_s": static_speed}}}

    assert verdicts(bench.gpu_targets(gpu(7.5, 36.0, 20.0, 0.8))) == [True, True, True]
    assert verdicts(bench.gpu_targets(gpu(8.5, 28.0, 36.0, 1.2))) == [False, False, True, False]

    # The app adds at most 150 ms to the first streamed text; a clip without the figure gets no verdict.
    reports = [{"clip": name, "app_overhead_s": overhead, "bare": {"first_text_s": 0.05}}
               for name, overhead in (("a.mp4", 0.1), ("b.mp4", 0.2))] + [{"clip": "c.mp4"}]
    assert verdicts(bench.pipeline_targets(reports)) == [True, False]


@pytest.mark.slow
def test_pipeline_and_app_overhead(gpu_report):
    """Engine stages and the app's first streamed text, here on the tiny random model (the benchmark
    uses the toy model)."""
    clip = bench.make_clip(TINY_CLIP, bench.Path(gpu_report["built"]["path"]).parent / "clips")
    report = bench.measure_pipeline(bench.Path(gpu_report["built"]["path"]), clip, repeats=1, max_new_tokens=16)
    # Greedy on one model: the engine, the app through gradio_client and the app over raw HTTP write
    # the same tokens, no more than asked for.
    assert report["engine"]["new_tokens"] == report["app"]["new_tokens"] == report["app_raw"]["new_tokens"] <= 16
    # The first streamed text was seen on every path (in the raw events too, where Gradio sends diffs),
    # so the overheads could be taken.
    assert "app_overhead_s" in report and "app_overhead_client_s" in report
    assert report["bare"]["first_text_s"] is not None and report["bare_raw"]["first_text_s"] is not None
    text = "\n".join(bench.render_pipeline([report]))
    assert "app's own overhead" in text and "first token" in text and "bare Gradio" in text
    assert bench._fmt_s(report["app_overhead_s"]) in text
    # The page, in chromium: the whole answer shown, against the engine alone.
    assert 0 < report["browser"]["shown_s"] < 60 and report["browser_ratio"] > 0
    assert "A whole answer in a browser" in text


def test_report_keeps_a_part_this_run_did_not_measure():
    cpu = bench.render_cpu_section(bench.machine_info(), [], None, {})
    fresh = bench.render_report(cpu, None, "", parameters=8_292_166_656)
    assert "GPU figures still to come" in fresh and "8.29 B" in fresh
    measured_gpu = "<!-- measured -->\n## GPU part\nH100 figures"
    old = bench.render_report(None, measured_gpu, "")
    rewritten = bench.render_report(cpu, None, old)
    assert "H100 figures" in rewritten and "still to come" not in rewritten
    assert rewritten.count("<!-- bench:cpu -->") == 1 and "## CPU part" in rewritten
    with_notes = rewritten.replace(bench.NOTES_PLACEHOLDER, "## Notes\n\nWhy the resize costs what it costs.")
    assert "Why the resize" in bench.render_report(cpu, None, with_notes)


def test_the_long_answer_replay_writes_a_whole_answer_that_never_loops(toy_model_dir):
    """The stand-in for a model that writes a long answer: the tokens asked for, a rationale that is
    never taken for a loop, and a score block the parser reads with its probabilities."""
    from types import SimpleNamespace

    import numpy as np
    from transformers import AutoTokenizer

    from vs2demo.backends import Generation, TextUpdate
    from vs2demo.parsing import parse
    from vs2demo.repetition import find_repetition

    frames = np.random.default_rng(1).integers(0, 255, (8, 84, 112, 3), dtype=np.uint8)
    video = SimpleNamespace(frames=frames, timestamps=tuple(i * 0.5 for i in range(8)), count=8, width=112, height=84)
    backend = bench.ReplayBackend(AutoTokenizer.from_pretrained(toy_model_dir), n_tokens=1024, tokens_per_s=1e6)
    stream = list(backend.generate(video, "a prompt", options=None))
    updates, generation = stream[:-1], stream[-1]
    assert all(isinstance(u, TextUpdate) for u in updates) and isinstance(generation, Generation)
    assert generation.new_tokens == 1024 == updates[-1].new_tokens and not generation.stopped_early
    assert len(backend.tokenizer(generation.text).input_ids) == 1024
    assert not any(find_repetition(u.text) for u in updates[1::7])  # every 7th prefix: the loop check's view
    parsed = parse(generation.text)
    assert [parsed.scores[key] for key in ("visual_quality", "text_alignment", "physical_consistency")] == [4, 3, 2]
    assert len(generation.digit_steps) == 3 and generation.probs_at(generation.digit_steps[0].start)[3] == 0.8


@pytest.mark.slow
def test_a_long_answer_is_measured_in_the_browser_and_through_the_client(workdir, toy_model_dir):
    clip = bench.make_clip(TINY_CLIP, workdir / "clips")
    report = bench.measure_long_answer(toy_model_dir, clip, repeats=1, n_tokens=96, tokens_per_s=300.0)
    assert all(run["new_tokens"] == 96 and run["error"] is None for run in report["engine"]["runs"])
    assert report["client"]["runs"][0]["new_tokens"] == 96
    assert report["browser"]["shown_s"] > 0 and report["browser_ratio"] > 0
    assert report["unpaced"]["shown_s"] > 0 and report["unpaced"]["client_s"] > 0
    text = "\n".join(bench.render_long_answer(report))
    assert "A long answer in a browser" in text and "96 tokens" in text
    assert bench.long_answer_targets(report)[0]["figure"].startswith(f"{report['browser_ratio']:.2f}x")


@pytest.mark.slow
def test_exploring_many_judgements_is_measured_in_the_browser(workdir, toy_model_dir):
    report = bench.measure_explore(toy_model_dir, workdir, n=300, repeats=1)
    assert report["python_build_s"] > 0 and report["python_query_s"] > 0 and report["python_read_s"] > 0
    for key in ("browser_upload_s", "browser_load_s", "browser_search_s", "browser_filter_s", "browser_sort_s"):
        assert 0 < report[key] < 60, key
    text = "\n".join(bench.render_explore(report))
    assert "300 synthetic records" in text and "100 tokens of token confidence each" in text
    load, change = bench.explore_targets(report)
    assert load["figure"].startswith(f"{report['browser_load_s']:.2f} s") and change["figure"].endswith("(medians)")


@pytest.mark.slow  # a start of the app
def test_the_time_to_the_page_is_measured():
    report = bench.measure_time_to_page(repeats=1)
    assert 0 < report["page_s"] < 300 and "From `python app.py` to a page" in "\n".join(bench.render_time_to_page(report))


@pytest.mark.slow  # about a minute: hostile files through Explore's loading path, in a child process
def test_explore_memory_stays_within_its_budget_and_is_freed_when_the_sessions_end(workdir):
    report = bench.measure_explore_memory(workdir, file_mb=20, budget_mb=50, sessions=3)
    assert report["refused"].startswith("More than 100,000 records")
    assert report["held"] == 1  # each set fits the budget alone: a new one lets the last go
    grown = report["peak_rss"] - report["start_rss"]
    # Two sets at most live at once (the one held, the one being read), about 7 times their file each.
    assert grown < 2 * 8 * report["file_bytes"]
    assert report["after_rss"] < report["peak_rss"] - report["file_bytes"]
    assert "Explore's memory under hostile files" in "\n".join(bench.render_explore_memory(report))


@pytest.mark.slow  # 4 s of scoring on the toy
def test_the_inspect_part_measures_confidence_and_samples_and_keeps_its_section(toy_model_dir):
    from vs2demo.ui.controls import ASSETS, example_rows

    row = example_rows()[0]
    report = bench.measure_inspect(toy_model_dir, [(ASSETS / row["video"], row["prompt"])], repeats=1, k_values=(2,))
    assert [d["decoding"] for d in report["decodings"]] == ["greedy", "sampling at 0.7"]
    assert all(d["rate_on"] > 0 and d["rate_off"] > 0 for d in report["decodings"])
    assert 10 < report["bytes_per_token"] < 100
    [two] = report["samples"]
    assert two["k"] == 2 and two["together_tokens"] > 0 and two["apart_tokens"] > 0
    section = "<!-- measured -->\n" + "\n".join(bench.render_inspect(report))
    text = bench.render_report(None, None, "", 1, section)
    assert "token confidence and K samples" in text
    assert "token confidence and K samples" in bench.render_report(None, None, text, 1)  # kept by a later run


def test_the_batch_paths_section_is_kept_by_a_run_that_does_not_measure_it():
    runs = [{"path": "in process (transformers)", "rows": 24, "failed": 0, "tokens": 1500, "total_s": 12.0,
             "steady_rows_per_s": 2.1},
            {"path": "Ray, 2 vLLM clients", "rows": 24, "failed": 0, "tokens": 1500, "total_s": 40.0,
             "steady_rows_per_s": 3.0}]
    section = "\n".join(["<!-- measured -->", "## Scoring a batch"] + bench.render_paths({"rows": 24, "runs": runs}))
    assert "| Ray, 2 vLLM clients | 24 (0) |" in section and "0.30x" in section
    first = bench.render_report("## CPU part", None, paths_section=section)
    again = bench.render_report("## CPU part", None, old_text=first)
    assert section.strip() in again
