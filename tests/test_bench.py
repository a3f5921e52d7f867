"""The benchmark's code, end to end on small inputs: no timing is asserted (speed lives in
`python -m vs2demo.bench` and BENCHMARKS.md), only that every part runs and reports what it should."""

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


def test_the_gpu_part_runs_end_to_end_on_a_cpu(gpu_report):
    for name in ("4bit", "bf16"):
        row = gpu_report["variants"][name]
        assert "error" not in row, row
        assert row["new_tokens"] == 24  # min_new_tokens forces the length a random model would not reach
        assert row["visual_tokens"] > 0 and row["prompt_tokens"] > row["visual_tokens"]
        assert row["decode_tokens_per_s"] > 0 and row["first_token_s"] > 0 and row["vision_s"] > 0
    assert gpu_report["variants"]["4bit"]["quant"] == "4bit" and gpu_report["variants"]["bf16"]["dtype"] == "bfloat16"
    assert gpu_report["capture"]["output_scores_bytes"] == 24 * 2048 * 4
    assert gpu_report["capture"]["digits_bytes"] == 24 * 5 * 4

    section = bench.render_gpu_section(gpu_report)
    for label in ("load time", "peak GPU memory", "time to first token", "vision encoder", "decode tokens per second",
                  "visual tokens", "output_scores", "GPU targets", "| 4bit | bf16 |"):
        assert label in section, label
    assert "failed" not in section


def test_the_model_is_built_once_and_loaded_like_a_checkpoint(gpu_report, workdir):
    built = gpu_report["built"]
    again = bench.build_random_model(built["path"], bench.ModelSizes.tiny(), "cpu", **TINY_PIXELS)
    assert again["reused"] and again["parameters"] == built["parameters"]


def test_videoscore2_sizes_are_the_real_models():
    sizes = bench.ModelSizes.videoscore2()
    assert sizes.kv_bytes_per_token == 56 * 1024  # REFERENCE.md: about 56 KiB per token
    assert abs(bench.count_parameters(sizes) - 8.29e9) < 0.01e9


def test_frame_sampling_part_on_a_small_clip(workdir):
    spec = bench.ClipSpec("3 s 320x240", 3, 320, 240, fps=12)
    clip = bench.make_clip(spec, workdir / "clips")
    [row] = bench.measure_sampling([(spec, clip)], repeats=1, memory=False)
    assert "error" not in row, row
    assert row["same_frames"] and row["frames"] == 6
    assert row["ratio_best"] > 0 and row["backends"] == ["pyav"]
    assert 0 < row["decode_best"] and row["times"]["decode"]
    text = "\n".join(bench.render_sampling([row]))
    assert "3 s 320x240" in text and "bit-identical" in text and "decoding alone" in text
    assert bench.sampling_targets([row])[0]["met"] in (True, False)

    # What each memory subprocess runs (here in this process), and how a failing one reports.
    task = {"path": str(clip), "fps": 2.0, "max_frames": 64, "indices": list(range(0, 36, 7))[:6]}
    for loader in ("baseline", "project", "transformers"):
        measured = bench._sampling_memory_child({**task, "loader": loader})
        assert measured["maxrss_bytes"] > 0 and (measured["kept_bytes"] > 0) == (loader != "baseline")
    with pytest.raises(bench.ChildFailed, match="unknown task"):
        bench.run_child({"task": "no such task"})


def test_pipeline_and_app_overhead(gpu_report):
    """Engine stages and the app's first streamed text, here on the tiny random model (the benchmark
    uses the toy model)."""
    clip = bench.make_clip(TINY_CLIP, bench.Path(gpu_report["built"]["path"]).parent / "clips")
    report = bench.measure_pipeline(bench.Path(gpu_report["built"]["path"]), clip, repeats=1, max_new_tokens=16)
    stages = report["engine"]
    assert stages["new_tokens"] > 0 and stages["decode_s"] > 0 and stages["total_s"] > 0
    assert report["app"]["total_s"] > 0
    assert report["app"]["first_update_s"] > 0 and report["app_raw"]["first_update_s"] > 0
    assert report["app_raw"]["upload_s"] > 0 and report["bare"]["first_text_s"] > 0
    assert "app_overhead_s" in report and "app_overhead_client_s" in report
    text = "\n".join(bench.render_pipeline([report]))
    assert "app's own overhead" in text and "first token" in text and "bare Gradio" in text


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
