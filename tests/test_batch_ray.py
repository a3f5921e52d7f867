"""`python -m vs2demo batch`: rows scored in this process and as a Ray Data job on a local cluster
(the toy, on CPUs) give the same records; a bad row fails alone; a killed worker is replaced and
its row scored; a killed job finishes with --resume, without duplicates. Ray's start-up takes
20-30 s, so these are in the slow run."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vs2demo.__main__ import main
from vs2demo.ui.controls import ASSETS, example_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# No results store: each run scores (a stored record would make the Ray job's records those made here).
TOY = ["--model", "toy", "--quant", "none", "--device", "cpu", "--no-store"]


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory) -> Path:
    """Twelve rows (the six example clips, each with two prompts), a file that is not a video and a
    row naming no file."""
    folder = tmp_path_factory.mktemp("rows")
    (folder / "broken.mp4").write_bytes(b"not a video")
    path = folder / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "prompt"])
        for suffix in ("", " Seen from afar."):
            for row in example_rows():
                writer.writerow([str(ASSETS / row["video"]), row["prompt"] + suffix])
        writer.writerow(["broken.mp4", "A clip that is not a video"])
        writer.writerow(["missing.mp4", "Nothing here"])
    return path


def records(path: Path) -> dict[tuple[str, str], dict]:
    found = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_row = {(record["video"], record["prompt"]): record for record in found}
    assert len(by_row) == len(found), "a row was written twice"
    return by_row


def same_scores(ours: dict, theirs: dict) -> bool:
    """The same scores, and p(1..5) (kept at full precision) equal but for float noise: a Ray worker
    computes on its one CPU's thread, this process on several, and sums may part in the last bits."""
    return all(ours[key]["score"] == theirs[key]["score"]
               and (ours[key]["probs"] is None) == (theirs[key]["probs"] is None)
               and ours[key]["probs"] == pytest.approx(theirs[key]["probs"], abs=1e-6)
               and ours[key]["expected"] == pytest.approx(theirs[key]["expected"], abs=1e-6) for key in ours)


@pytest.fixture(scope="module")
def here(rows_file, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("here") / "here.jsonl"
    assert main(["batch", str(rows_file), "--out", str(out), *TOY]) == 1  # two rows fail
    return records(out)


def test_a_ray_job_writes_the_records_scored_here_and_a_bad_row_fails_alone(rows_file, here, tmp_path):
    out = tmp_path / "ray.jsonl"
    assert main(["batch", str(rows_file), "--out", str(out), "--ray", "--workers", "1", *TOY]) == 1
    ray_records = records(out)
    assert ray_records.keys() == here.keys() and len(here) == 14
    for row, record in here.items():
        theirs = ray_records[row]
        for field in ("text", "key", "video_sha256", "checks", "error"):
            assert theirs.get(field) == record.get(field), (row, field)
        assert same_scores(theirs["scores"], record["scores"]), row
        assert theirs.get("frames", {}).get("indices") == record.get("frames", {}).get("indices")
    failed = {row[0]: record["error"] for row, record in ray_records.items() if record.get("error")}
    assert set(failed) == {"broken.mp4", "missing.mp4"}
    assert "could not be read as a video" in failed["broken.mp4"] and "No such video file" in failed["missing.mp4"]


def test_a_ray_resume_adds_only_rows_not_recorded_failed_ones_included(tmp_path, capsys):
    """A clip that scores, a file that is not a video and a path with no file: a resumed job finds
    each recorded (the failed ones too), run after run, and --retry-failed scores the failed again."""
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    rows = tmp_path / "rows.csv"
    example = example_rows()[0]
    rows.write_text(f"{ASSETS / example['video']},{example['prompt']}\nbroken.mp4,A clip\nmissing.mp4,Nothing here\n",
                    encoding="utf-8")
    out = tmp_path / "ray.jsonl"
    job = ["batch", str(rows), "--out", str(out), "--ray", "--workers", "1", *TOY]
    assert main(job) == 1
    first = records(out)
    assert len(first) == 3
    capsys.readouterr()
    for _ in range(2):
        assert main([*job, "--resume"]) == 0
        assert "3 done already" in capsys.readouterr().err
        assert records(out) == first
    assert main([*job, "--resume", "--retry-failed"]) == 1
    again = records(out)
    assert again.keys() == first.keys()
    assert [row[0] for row, record in again.items() if record.get("error")] == ["broken.mp4", "missing.mp4"]


def ray_job(rows_file: Path, out: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vs2demo", "batch", str(rows_file), "--out", str(out), "--ray",
                             *flags, *TOY], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def lines_in(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def score_workers() -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if "ScoreRows" in " ".join(p.info["cmdline"] or [])]


def test_a_killed_worker_is_replaced_and_a_killed_job_resumes_without_duplicates(rows_file, here, tmp_path):
    out = tmp_path / "ray.jsonl"
    job = ray_job(rows_file, out)
    try:
        deadline = time.monotonic() + 240
        while lines_in(out) < 2:  # the worker is up and scoring
            assert job.poll() is None and time.monotonic() < deadline, job.stdout.read() if job.poll() is not None else ""
            time.sleep(0.2)
        workers = score_workers()
        assert workers, "no Ray worker holding the model was found"
        for worker in workers:
            worker.kill()  # Ray starts another; the row it held is scored again
        while lines_in(out) < 6:
            assert job.poll() is None and time.monotonic() < deadline, job.stdout.read() if job.poll() is not None else ""
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGKILL)  # the whole job, driver and cluster
        job.wait(30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    written = lines_in(out)
    assert 6 <= written < 14
    again = ray_job(rows_file, out, "--resume")
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 1, output  # the two bad rows
    assert "done already" in output
    final = records(out)  # every row once: none lost to the kills, none written twice
    assert final.keys() == here.keys()
    for row, record in here.items():
        assert final[row]["text"] == record["text"] and same_scores(final[row]["scores"], record["scores"])
