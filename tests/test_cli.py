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

    assert not files.ROOT.name.isidentifier()  # no import can take it for a package
    files._own_folder(tmp_path / files.ROOT.name)  # as a running app makes it beside where we stand
    here = tmp_path
    # The command pip installed beside this Python (a shim on PATH may not be made yet, as pyenv's).
    beside = Path(sys.executable).with_name("vs2demo")
    command = str(beside) if beside.exists() else shutil.which("vs2demo")
    assert command, "no vs2demo command: pip install -e ."
    for argv in ([command, "--help"], [sys.executable, "-m", "vs2demo", "--help"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=here)
        assert done.returncode == 0 and "score" in done.stdout, done.stderr


def test_the_toy_loads_in_full_precision_unless_a_quantization_is_asked(toy_model_dir, clean_clip, capsys):
    """`--model toy` with no --quant loads the toy as it is (the default 4bit is for the real model): no
    bitsandbytes warning on a CPU."""
    assert main(["score", str(clean_clip), "--prompt", "A red ball.", "--model", "toy", "--device", "cpu",
                 "--max-frames", "8", "--json", "--no-store"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["settings"]["quant"] == "none" and "bitsandbytes" not in err


def test_score_help_names_every_template(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    shown = capsys.readouterr().out
    assert all(f"{name} (" in shown for name in ("card", "eval", "inference"))  # each named with what it is


# ---- --out and --resume: one record a row, run after run -----------------------------------------------

def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def three_kinds(clean_clip, tmp_path) -> list[Path]:
    """A clip that scores, a file that is not a video and a path with no file."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    return [clean_clip, broken, tmp_path / "missing.mp4"]


def test_resume_adds_only_what_is_not_recorded_failed_videos_included(toy_model_dir, three_kinds, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    args = ["score", *three_kinds, "--prompt", PROMPT, *toy(toy_model_dir), "--no-store", "--json", "--out", out]
    assert cli(capsys, *args)[0] == 1
    first = lines_of(out)
    assert [r["video"] for r in first] == ["clean.mp4", "broken.mp4", "missing.mp4"]
    for _ in range(2):
        code, printed, err = cli(capsys, *args, "--resume")
        assert code == 1 and err.count("done already") == 3, err
        assert lines_of(out) == first  # nothing written again
        assert [json.loads(line) for line in printed.splitlines()] == first  # and each shown as recorded
    code, _, err = cli(capsys, *args, "--resume", "--retry-failed")
    assert "2 failed records taken out" in err and err.count("done already") == 1
    again = lines_of(out)
    assert [r["video"] for r in again] == ["clean.mp4", "broken.mp4", "missing.mp4"] and again[0] == first[0]
    assert again[1]["scored_at"] >= first[1]["scored_at"] and again[1]["error"] == first[1]["error"]
    assert cli(capsys, *args, "--retry-failed")[0] == 2  # it goes with --resume


def test_resume_repairs_a_line_cut_by_a_kill_and_the_file_stays_readable(toy_model_dir, clean_clip, noisy_clip,
                                                                        tmp_path, capsys):
    from vs2demo.records_io import read_records

    out = tmp_path / "out.jsonl"
    args = ["score", clean_clip, noisy_clip, "--prompt", PROMPT, *toy(toy_model_dir), "--no-store", "--out", out]
    assert cli(capsys, *args)[0] == 0
    whole = out.read_bytes()
    out.write_bytes(whole[:-150])  # killed while writing the second record
    code, _, err = cli(capsys, *args, "--resume")
    assert code == 0 and "last line" in err and "cut off" in err and err.count("done already") == 1
    records = read_records(out)  # every line reads: the cut one is gone, not left mid-file
    assert [r.video for r in records] == ["clean.mp4", "noisy.mp4"]
    assert out.read_bytes().startswith(whole[:whole.index(b"\n") + 1])  # the whole line before it kept as it was


@pytest.mark.parametrize("bad_line, why", [
    ('{"video": "a.mp4", "prompt": "p", "key": ["not", "a", "key"], "error": "x"}', "key: text or null"),
    ('{"video": "a.mp4", "prompt": "p", "key": "not-a-hash", "error": "x"}', "key is not a SHA-256"),
    ('{"video": "a.mp4", "prompt": "p", "key": "' + "ab" * 32 + '"}', "neither an error nor a key and three scores"),
    ('{"video": "a.mp4", "prompt": "p", "model": "toy", "scores": {"visual_q', "not JSON"),
    ('[1, 2, 3]', "a JSON object"),
    ('{"video": "a.mp4", "prompt": "p", "error": "x", "scores": {"visual_quality": {"score": "<b>5</b>"}}}',
     "scores.visual_quality.score"),
])
def test_resume_refuses_a_line_it_cannot_trust_by_its_number_before_any_work(bad_line, why, tmp_path, capsys):
    good = json.dumps({"video": "b.mp4", "prompt": "p", "model": "toy", "error": "No such file", "key": None})
    out = tmp_path / "out.jsonl"
    out.write_text(f"{good}\n{bad_line}\n{good}\n", encoding="utf-8")
    code, _, err = cli(capsys, "score", "x.mp4", "--prompt", "p", "--model", "toy", "--no-store", "--out", out, "--resume")
    assert code == 2 and f"Line 2 of {out}" in err and why in err, err
    assert "Traceback" not in err and "loading" not in err


@pytest.fixture
def disk(tmp_path):
    """`disk(options)`: a folder on a small file system of its own (a tmpfs mounted with `options`,
    e.g. "ro"); skipped where this user may not mount."""
    import subprocess as run

    mounted = []

    def make(options: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        if run.run(["mount", "-t", "tmpfs", "-o", f"size=256k,{options}", "tmpfs", str(folder)],
                   capture_output=True).returncode != 0:
            pytest.skip("mounting a small file system needs root")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        run.run(["umount", str(folder)], check=True)


def full_disk(disk) -> Path:
    folder = disk("rw")
    with (folder / "filler").open("wb", buffering=0) as filler, pytest.raises(OSError, match="No space"):
        while True:
            filler.write(b"\0" * 4096)
    return folder


@pytest.mark.parametrize("where", ["a folder", "read-only", "a full disk"])
@pytest.mark.parametrize("command", ["score", "batch"])
def test_an_out_that_cannot_be_written_is_a_usage_error_before_any_work(command, where, disk, tmp_path, capsys):
    out = {"a folder": lambda: tmp_path, "read-only": lambda: disk("ro") / "out.jsonl",
           "a full disk": lambda: full_disk(disk) / "out.jsonl"}[where]()
    rows = tmp_path / "rows.csv"
    rows.write_text("x.mp4,a prompt\n", encoding="utf-8")
    first = ["score", "x.mp4", "--prompt", "p", "--no-store"] if command == "score" else ["batch", rows]
    code, _, err = cli(capsys, *first, "--model", "toy", "--out", out)
    assert code == 2 and f"Cannot write records to {out}" in err, err
    assert "Traceback" not in err and "loading" not in err


def damaged_store(path: Path) -> Path:
    """A results store whose file was damaged after it was written: it opens, but no record can be
    read from it or kept in it ("database disk image is malformed")."""
    import sqlite3

    from vs2demo.results import ScoreResult
    from vs2demo.store import ResultStore

    store = ResultStore(path)
    for number in range(30):
        store.put(ScoreResult(video=f"v{number}.mp4", prompt="p", model="toy", key=f"{number:064x}", text="x" * 3000))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[2 * 4096:] = b"\xa5" * (len(data) - 2 * 4096)  # every page but the first two
    path.write_bytes(data)
    return path


def test_a_damaged_store_is_said_the_record_still_goes_to_out_and_export_says_why(toy_model_dir, clean_clip,
                                                                                   tmp_path, capsys):
    store = damaged_store(tmp_path / "store.sqlite3")
    out = tmp_path / "out.jsonl"
    code, printed, err = cli(capsys, "score", clean_clip, "--prompt", PROMPT, *toy(toy_model_dir), "--json",
                             "--store", store, "--out", out)
    assert code == 0 and json.loads(printed)["overall"] is not None
    assert lines_of(out)[0]["key"] == json.loads(printed)["key"]  # kept in --out all the same
    assert f"warning: the results store {store} cannot keep records" in err and "malformed" in err
    assert "Traceback" not in err
    code, _, err = cli(capsys, "export", "--store", store, "--out", tmp_path / "all.jsonl")
    assert code == 1 and f"the results store {store} cannot be read" in err and "Traceback" not in err
    assert not (tmp_path / "all.jsonl").exists()


def test_batch_keeps_its_records_in_the_store_as_score_does(toy_model_dir, clean_clip, tmp_path, capsys, monkeypatch):
    from vs2demo.store import ResultStore

    rows = tmp_path / "rows.csv"
    rows.write_text(f"{clean_clip},{PROMPT}\n", encoding="utf-8")
    store = tmp_path / "store.sqlite3"
    batch = ["batch", rows, *toy(toy_model_dir)]
    assert cli(capsys, *batch, "--out", tmp_path / "1.jsonl", "--store", store)[0] == 0
    assert len(ResultStore(store)) == 1
    assert cli(capsys, *batch, "--out", tmp_path / "2.jsonl", "--store", store)[0] == 0
    assert lines_of(tmp_path / "2.jsonl")[0]["stored"] is True  # served, as score serves it
    monkeypatch.setenv("VS2_STORE", str(tmp_path / "env.sqlite3"))
    assert cli(capsys, *batch, "--out", tmp_path / "3.jsonl")[0] == 0
    assert len(ResultStore(tmp_path / "env.sqlite3")) == 1
    assert cli(capsys, *batch, "--out", tmp_path / "4.jsonl", "--no-store", "--store", store)[0] == 0
    assert len(ResultStore(store)) == 1 and not lines_of(tmp_path / "4.jsonl")[0]["stored"]


def test_batch_resume_adds_only_rows_not_recorded(toy_model_dir, three_kinds, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text("".join(f"{path},{PROMPT}\n" for path in three_kinds), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    batch = ["batch", rows, "--out", out, *toy(toy_model_dir)]
    assert cli(capsys, *batch)[0] == 1
    first = lines_of(out)
    assert len(first) == 3
    for _ in range(2):
        code, _, err = cli(capsys, *batch, "--resume")
        assert code == 0 and "3 done already" in err, err
        assert lines_of(out) == first
