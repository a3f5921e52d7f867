"""`python -m vs2demo score` and `export` end to end on the toy model, as a person runs them from a
shell. Most run `main()` in this process (a new Python costs seconds of imports); the kill test
runs the real command."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vs2demo import scoring
from vs2demo.__main__ import main

APP = Path(__file__).resolve().parents[1] / "app.py"

PROMPT = "A red ball rolls and bounces across a grey studio floor."  # one colour word: the toy compares it with the ball


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def toy(toy_model_dir):
    return ["--model", toy_model_dir, "--device", "cpu", "--quant", "none"]


def test_scores_every_video_in_order_and_a_bad_file_fails_alone(toy_model_dir, clean_clip, noisy_clip, tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is a text file renamed to .mp4\n")
    code, out, err = cli(capsys, "score", clean_clip, bad, noisy_clip, "--prompt", PROMPT, *toy(toy_model_dir),
                         "--json", "--no-store")
    assert code == 1, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["video"] for r in records] == [clean_clip.name, "notes.mp4", noisy_clip.name]  # as every tab names them
    assert "error" not in records[0] and "error" not in records[2]
    assert records[1]["error"] and "Traceback" not in err
    assert all(records[i]["scores"]["visual_quality"]["score"] in (1, 2, 3, 4, 5) for i in (0, 2))
    assert "toy model" in err  # says plainly what is loaded
    assert "[3/3]" in err  # progress on stderr


def test_a_failure_that_is_not_the_inputs_fault_does_not_end_the_list(toy_model_dir, clean_clip, noisy_clip, capsys,
                                                                     monkeypatch):
    real = scoring.Scorer.sample

    def sample(self, video, *args):
        if str(video) == str(clean_clip):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(self, video, *args)

    monkeypatch.setattr(scoring.Scorer, "sample", sample)
    code, out, err = cli(capsys, "score", clean_clip, noisy_clip, "--prompt", PROMPT, *toy(toy_model_dir), "--json",
                         "--no-store")
    assert code == 1
    first, second = (json.loads(line) for line in out.splitlines())
    assert "OutOfMemoryError" in first["error"] and second["overall"] is not None


def test_table_output_and_exit_zero_when_all_scored(toy_model_dir, clean_clip, capsys):
    code, out, err = cli(capsys, "score", clean_clip, "--prompt", PROMPT, *toy(toy_model_dir), "--template", "eval",
                         "--max-frames", "8", "--no-store")
    assert code == 0, err
    header, rule, row = out.splitlines()[:3]
    assert header.split() == ["video", "visual", "alignment", "physical", "overall"]
    assert row.startswith(clean_clip.name)


def test_a_second_run_comes_from_the_store_and_export_gets_the_records_out(toy_model_dir, clean_clip, noisy_clip,
                                                                          tmp_path, capsys):
    store = tmp_path / "store.sqlite3"
    args = ["score", clean_clip, noisy_clip, "--prompt", PROMPT, *toy(toy_model_dir), "--json", "--store", store]
    code, out, _ = cli(capsys, *args)
    first = [json.loads(line) for line in out.splitlines()]
    started = time.perf_counter()
    code, out, err = cli(capsys, *args)
    assert code == 0 and time.perf_counter() - started < 2.0  # the model is loaded, nothing generated
    second = [json.loads(line) for line in out.splitlines()]
    assert all(r["stored"] for r in second) and err.count("from the results store") == 2
    assert [{**r, "stored": False} for r in second] == first
    code, out, _ = cli(capsys, "score", clean_clip, "--prompt", PROMPT, *toy(toy_model_dir), "--json", "--store", store,
                       "--rescore")
    assert not json.loads(out)["stored"]

    code, _, err = cli(capsys, "export", "--store", store, "--out", tmp_path / "all.jsonl")
    lines = (tmp_path / "all.jsonl").read_text().splitlines()
    assert code == 0 and len(lines) == 3 and json.loads(lines[0])["key"] == first[0]["key"]
    code, _, _ = cli(capsys, "export", "--store", store, "--out", tmp_path / "all.csv")
    rows = (tmp_path / "all.csv").read_text().splitlines()
    assert rows[0].startswith("video,prompt,") and len(rows) == 4
    assert cli(capsys, "export", "--store", tmp_path / "none.sqlite3", "--out", tmp_path / "x.jsonl")[0] == 2
    assert cli(capsys, "export", "--store", store, "--out", tmp_path / "x.txt")[0] == 2


@pytest.mark.slow
def test_kill_9_in_a_batch_then_resume_gives_every_record_once(toy_model_dir, tmp_path, capsys):
    """A batch of 6 killed in the middle loses at most the video in flight; --resume does the rest."""
    from tools.clips import SceneSpec, render_scene, write_clip

    videos = []
    for i, quality in enumerate(["clean", "noisy", "dark", "clean", "noisy", "dark"]):
        path = tmp_path / f"clip{i}.mp4"
        write_clip(path, render_scene(SceneSpec("red", "studio", quality, "smooth"), n_frames=16, height=120,
                                      width=160, seed=i), fps=8.0)
        videos.append(path)
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "vs2demo", "score", *map(str, videos), "--prompt", PROMPT,
               *map(str, toy(toy_model_dir)), "--no-store", "--out", str(out), "--resume"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    written = out.read_text().count("\n")
    assert 2 <= written < 6, "the kill should land in the middle of the batch"
    # The rerun in this process (the same main()): a second interpreter would add 7 s of imports.
    code, _, err = cli(capsys, *command[3:])
    assert code == 0, err
    assert err.count("done already") >= written
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert sorted(r["video"] for r in records) == sorted(v.name for v in videos)
    assert len({r["key"] for r in records}) == 6


@pytest.mark.parametrize("args", [
    ["score", "x.mp4", "--prompt", "   "],
    ["score", "x.mp4", "--prompt", "p", "--max-frames", "2"],
    ["score", "x.mp4", "--prompt", "p", "--sample", "--seed", "18446744073709551616"],
    ["score", "x.mp4", "--prompt", "p", "--temperature", "nan", "--sample"],
    ["score", "x.mp4", "--prompt", "p", "--resume"],
])
def test_usage_errors_exit_2_before_loading_anything(args, capsys):
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert "error" in err.lower() and "Traceback" not in err
    assert "loading" not in err  # refused before any work


@pytest.mark.parametrize("args", [["score", "x.mp4", "--prompt", "p", "--quant", "3bit"], ["score", "--prompt", "p"]])
def test_bad_flags_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2


def test_devices_and_pipes_fail_alone_with_a_reason(toy_model_dir, clean_clip, tmp_path, capsys):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    code, out, err = cli(capsys, "score", "/dev/zero", fifo, "/dev/null", clean_clip, "--prompt", PROMPT,
                         *toy(toy_model_dir), "--json", "--no-store")
    assert code == 1, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [("not a regular file" in r.get("error", "")) for r in records] == [True, True, True, False]
    assert records[3]["overall"] is not None and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_without_a_gpu_the_real_model_is_refused_with_a_reason(tmp_path, capsys):
    from transformers import Qwen2_5_VLConfig

    Qwen2_5_VLConfig().save_pretrained(tmp_path)
    code, _, err = cli(capsys, "score", "x.mp4", "--prompt", "p", "--model", tmp_path, "--no-store")
    assert code == 1
    assert "CUDA GPU" in err and "Traceback" not in err


def test_help_works():
    assert subprocess.run([sys.executable, "-m", "vs2demo", "--help"], capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([sys.executable, str(APP), "--help"], capture_output=True, text=True, timeout=60).returncode == 0


def test_the_installed_command_works_from_any_folder_the_app_s_temporary_one_included(tmp_path):
    """`pip install -e .` (the README's set-up, .ci/run's) gives a `vs2demo` command and a
    `python -m vs2demo` that work outside the repository; the folder the app makes under the
    temporary folder (where a run from /tmp stands) must not pass for the package."""
    import shutil

    from vs2demo.ui import files

    files._own_folder(tmp_path / files.ROOT.name)  # as a running app makes it beside where we stand
    here = tmp_path
    command = shutil.which("vs2demo")
    assert command, "no vs2demo command: pip install -e ."
    for argv in ([command, "--help"], [sys.executable, "-m", "vs2demo", "--help"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=here)
        assert done.returncode == 0 and "score" in done.stdout, done.stderr


def test_the_toy_is_full_precision_whatever_quant_is_asked(toy_model_dir, clean_clip, capsys):
    """`--model toy` with the default --quant (4bit) loads the toy as it is: no bitsandbytes on a CPU."""
    assert main(["score", str(clean_clip), "--prompt", "A red ball.", "--model", "toy", "--device", "cpu",
                 "--max-frames", "8", "--json", "--no-store"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["settings"]["quant"] == "none" and "bitsandbytes" not in err


def test_score_help_names_every_template(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    shown = capsys.readouterr().out
    assert all(f"{name} (" in shown for name in ("card", "eval", "inference"))  # each named with what it is
