"""The running app through its API (gradio_client), on the toy model: what a script user sees."""

import csv
import io
import json
import time

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from vs2demo import DIMENSIONS

PROMPT = "A red ball rolls and bounces across a grey studio floor."  # one colour word: the toy compares it with the ball


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_score_streams_updates_then_the_record(client, clean_clip):
    job = client.submit(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    updates = list(job)
    record = job.result()
    texts = [u["text"] for u in updates if "text" in u and u.get("stage") == "generating" and u["text"]]
    assert len(texts) >= 2, "the reasoning should arrive in several updates"
    assert record["overall"] is not None and "error" not in record
    assert set(record["scores"]) == set(DIMENSIONS)
    assert record["text"].startswith("<think>")


def test_stop_then_score_again_at_once(client, clean_clip):
    job = client.submit(handle_file(str(clean_clip)), PROMPT, api_name="/score", )
    while not any(isinstance(u, dict) and u.get("text") for u in job.outputs()):
        time.sleep(0.02)
        if job.done():
            break
    job.cancel()
    started = time.perf_counter()
    job = client.submit(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    record = job.result(timeout=120)
    assert record["overall"] is not None
    assert time.perf_counter() - started < 60


def test_a_bad_file_is_an_error_and_the_app_still_scores(client, clean_clip, tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bad)), PROMPT, api_name="/score")
    assert "video" in str(info.value).lower()
    with pytest.raises(AppError, match="prompt"):
        client.predict(handle_file(str(clean_clip)), "  ", api_name="/score")
    record = client.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    assert record["overall"] is not None


def test_compare_two_videos(client, clean_clip, noisy_clip):
    records = client.predict([handle_file(str(clean_clip)), handle_file(str(noisy_clip))], PROMPT, api_name="/compare")
    assert len(records) == 2
    assert [r["video"] for r in records] == [clean_clip.name, noisy_clip.name]  # the names as uploaded
    assert all(r["overall"] is not None for r in records)


def test_rank_three_videos_best_first(client, clean_clip, noisy_clip, dark_clip):
    files = [handle_file(str(p)) for p in (noisy_clip, clean_clip, dark_clip)]
    records = client.predict(files, PROMPT, api_name="/rank")
    assert [r["rank"] for r in records] == [1, 2, 3]
    overall = [r["overall"] for r in records]
    assert overall == sorted(overall, reverse=True)
    assert records[0]["video"] == clean_clip.name


def test_batch_returns_a_csv_with_a_failed_row(client, clean_clip, noisy_clip, tmp_path):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    prompts = f"video,prompt\n{clean_clip.name},{PROMPT}\n{noisy_clip.name},A noisy red ball\n"
    table, records = client.predict([handle_file(str(clean_clip)), handle_file(str(noisy_clip)), handle_file(str(bad))],
                                    "A default prompt", prompts, api_name="/batch")
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 3 and len(records) == 3
    assert rows[0]["prompt"] == PROMPT and rows[1]["prompt"] == "A noisy red ball"
    assert rows[2]["prompt"] == "A default prompt" and rows[2]["error"]
    assert rows[0]["overall"] and not rows[0]["error"]


def test_files_outside_the_upload_folder_are_refused(served_app, clean_clip, monkeypatch):
    # gradio_client would upload the file first; a raw HTTP caller (all parameters given) can
    # name any path on the server.
    import httpx

    app_url, scorer = served_app
    opened = []
    real_sample = scorer.sample
    monkeypatch.setattr(scorer, "sample", lambda path, *args, **kwargs: opened.append(path) or real_sample(path, *args, **kwargs))
    with httpx.Client(base_url=app_url, timeout=60) as http:
        def score(file: dict) -> str:
            data = [{**file, "meta": {"_type": "gradio.FileData"}}, PROMPT, "card", 2.0, 64, False, 0.7, 0, 1024]
            event = http.post("gradio_api/call/score", json={"data": data}).json()["event_id"]
            return http.get(f"gradio_api/call/score/{event}").text

        refused = score({"path": "/etc/hostname"})
        assert "event: error" in refused and opened == []  # Gradio's own check: the path was not uploaded by a user
        # The same request naming an upload is scored: the refusal was the path's, not the request's.
        with open(clean_clip, "rb") as f:
            [uploaded] = http.post("gradio_api/upload", files={"files": (clean_clip.name, f, "video/mp4")}).json()
        scored = score({"path": uploaded, "orig_name": clean_clip.name})
    assert "event: complete" in scored and len(opened) == 1
    [record] = json.loads(scored.split("event: complete\ndata:", 1)[1])
    assert record["video"] == clean_clip.name and record["overall"] is not None


def test_the_toy_banner_says_why_the_app_fell_back_with_commands_as_code_and_nothing_as_markup():
    from vs2demo.ui.render import toy_banner

    banner = toy_banner("This machine has no CUDA GPU: add `--device cpu` <b>to run it anyway</b>.")
    assert "the real model cannot run here" in banner and "<code>--device cpu</code>" in banner
    assert "&lt;b&gt;to run it anyway&lt;/b&gt;" in banner and "mean nothing" in banner
    assert "<code>python app.py</code>" in toy_banner(None) and "cannot run here" not in toy_banner(None)


def test_streamed_page_updates_are_paced_to_a_few_a_second():
    from vs2demo.ui.render import UpdatePacer

    pacer = UpdatePacer(per_second=5)
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < 1.0:  # a model writing a token every 10 ms
        sent += pacer.due()
        time.sleep(0.01)
    assert 5 <= sent <= 6  # the first at once, then one each 0.2 s


def test_a_batch_says_about_how_long_is_left_from_the_videos_done_so_far():
    from vs2demo.results import ScoreResult
    from vs2demo.ui.batch import time_left

    done = [ScoreResult(video="a.mp4", prompt="p", model="m")] * 2
    started = time.monotonic() - 20.0  # two videos in 20 s: 10 s each
    assert time_left([], 8, started) == "" and time_left(done * 4, 8, started) == ""
    assert time_left(done, 8, started) == " · about 60 s left"
    assert time_left(done, 40, started) == " · about 6 min left"
