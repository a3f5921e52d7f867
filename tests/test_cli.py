"""`python -m vs2demo score` end to end on the toy model, as a person runs it from a shell."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

APP = Path(__file__).resolve().parents[1] / "app.py"

PROMPT = "A red ball rolls and bounces across a grey studio floor."  # one colour word: the toy compares it with the ball


def vs2demo(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "vs2demo", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_scores_every_video_in_order_and_a_bad_file_fails_alone(toy_model_dir, clean_clip, noisy_clip, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is a text file renamed to .mp4\n")
    done = vs2demo("score", clean_clip, bad, noisy_clip, "--prompt", PROMPT, "--model", toy_model_dir,
                   "--device", "cpu", "--quant", "none", "--json")
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["video"] for r in records] == [str(clean_clip), str(bad), str(noisy_clip)]
    assert "error" not in records[0] and "error" not in records[2]
    assert records[1]["error"] and "Traceback" not in done.stderr
    assert all(records[i]["scores"]["visual_quality"]["score"] in (1, 2, 3, 4, 5) for i in (0, 2))
    assert "toy model" in done.stderr  # says plainly what is loaded
    assert "[3/3]" in done.stderr  # progress on stderr


def test_table_output_and_exit_zero_when_all_scored(toy_model_dir, clean_clip):
    done = vs2demo("score", clean_clip, "--prompt", PROMPT, "--model", toy_model_dir, "--device", "cpu",
                   "--quant", "none", "--template", "eval", "--max-frames", "8")
    assert done.returncode == 0, done.stderr
    header, rule, row = done.stdout.splitlines()[:3]
    assert header.split() == ["video", "visual", "alignment", "physical", "overall"]
    assert row.startswith(str(clean_clip))


@pytest.mark.parametrize("args", [
    ["score", "x.mp4", "--prompt", "   "],
    ["score", "x.mp4", "--prompt", "p", "--quant", "3bit"],
    ["score", "--prompt", "p"],
    ["score", "x.mp4", "--prompt", "p", "--max-frames", "2"],
    ["score", "x.mp4", "--prompt", "p", "--sample", "--seed", "18446744073709551616"],
    ["score", "x.mp4", "--prompt", "p", "--temperature", "nan", "--sample"],
])
def test_usage_errors_exit_2_before_loading_anything(args):
    done = vs2demo(*args, timeout=60)
    assert done.returncode == 2
    assert "error" in done.stderr.lower() and "Traceback" not in done.stderr
    assert "loading" not in done.stderr  # refused before any work


def test_devices_and_pipes_fail_alone_with_a_reason(toy_model_dir, clean_clip, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    done = vs2demo("score", "/dev/zero", fifo, "/dev/null", clean_clip, "--prompt", PROMPT, "--model", toy_model_dir,
                   "--device", "cpu", "--quant", "none", "--json")
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [("not a regular file" in r.get("error", "")) for r in records] == [True, True, True, False]
    assert records[3]["overall"] is not None and "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_without_a_gpu_the_real_model_is_refused_with_a_reason(tmp_path):
    from transformers import Qwen2_5_VLConfig

    Qwen2_5_VLConfig().save_pretrained(tmp_path)
    done = vs2demo("score", "x.mp4", "--prompt", "p", "--model", tmp_path, timeout=120)
    assert done.returncode == 1
    assert "CUDA GPU" in done.stderr and "Traceback" not in done.stderr


def test_help_works():
    assert vs2demo("--help", timeout=60).returncode == 0
    assert subprocess.run([sys.executable, str(APP), "--help"], capture_output=True, text=True, timeout=60).returncode == 0
