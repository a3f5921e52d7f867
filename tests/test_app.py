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


def test_the_api_is_exactly_its_four_endpoints(client):
    # Gradio names every event after its function, private ones too: a page handler called
    # `compare` once pushed the public /compare to /compare_1.
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        "/score", "/compare", "/rank", "/batch"}


def test_score_streams_updates_then_the_record(client, clean_clip):
    job = client.submit(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    updates = list(job)
    record = job.result()
    texts = [u["text"] for u in updates if "text" in u and u.get("stage") == "generating" and u["text"]]
    assert texts and record["text"].startswith(texts[-1]), "the reasoning arrives while it is written"
    # Paced: at most 6 updates a second of generation (not one per token), each with all the text so far.
    assert len(texts) <= 6 * record["timings"]["generate_s"] + 2 < record["timings"]["new_tokens"]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert record["overall"] is not None and "error" not in record
    assert set(record["scores"]) == set(DIMENSIONS)
    assert record["text"].startswith("<think>")


def test_score_asks_again_k_times(client, clean_clip):
    job = client.submit(handle_file(str(clean_clip)), PROMPT, do_sample=True, temperature=1.0, seed=1, samples=3,
                        api_name="/score")
    record = job.result(timeout=120)
    assert len(record["samples"]) == 3 and record["settings"]["samples"] == 3
    assert set(record["agreement"]) == set(DIMENSIONS) and record["overall"] is not None
    assert len(record["tokens"]["p"]) == len(record["tokens"]["piece"])


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
    assert [(r["rank"], r["tied"]) for r in records] == [(1, False), (2, False), (3, False)]
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
            data = [{**file, "meta": {"_type": "gradio.FileData"}}, PROMPT, "card", 2.0, 64, False, 0.7, 0, 1024, "answer", 1, False]
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


def test_the_first_text_is_never_held_back_by_the_pacer():
    from vs2demo.scoring import ScoreUpdate
    from vs2demo.ui.render import UpdatePacer

    pacer = UpdatePacer(per_second=1)
    started, first, second = (ScoreUpdate("generating", text=t) for t in ("", "<think>The", "<think>The ball"))
    # Generation starting (no text yet) goes and takes no turn, so the first words go at once too.
    assert [pacer.skip(u) for u in (ScoreUpdate("sampled"), started, first, second)] == [False, False, False, True]


def test_a_batch_says_about_how_long_is_left_from_the_videos_done_so_far():
    from vs2demo.results import ScoreResult
    from vs2demo.ui.batch import time_left

    done = [ScoreResult(video="a.mp4", prompt="p", model="m")] * 2
    started = time.monotonic() - 20.0  # two videos in 20 s: 10 s each
    assert time_left([], 8, started) == "" and time_left(done * 4, 8, started) == ""
    assert time_left(done, 8, started) == " · about 60 s left"
    assert time_left(done, 40, started) == " · about 6 min left"


def test_toasts_lead_with_their_title_and_upload_boxes_say_how_many_files_they_hold():
    from vs2demo.ui.render import files_label, toast_message

    # Gradio 6.31 heads a toast with its kind only; the message itself says what happened.
    assert toast_message("Cannot start <b>", "a <script> name") == \
        "<strong>Cannot start &lt;b&gt;</strong><br>a &lt;script&gt; name"
    assert files_label("Videos", None) == "Videos"
    assert files_label("Videos", ["a.mp4"]) == "Videos: 1 file"
    assert files_label("Videos", ["a.mp4"] * 6) == "Videos: 6 files"


def _record(video: str, visual: int, error: str | None = None, text: str = "") -> dict:
    from vs2demo.results import DimensionScore, ScoreResult

    def scored(value: int):  # certain of its score: the expected value is the score
        return DimensionScore.from_probs(value, [float(value == k) for k in range(1, 6)])

    scores = {key: DimensionScore(None) if error else scored(visual if key == "visual_quality" else 3)
              for key in DIMENSIONS}
    return ScoreResult(video=video, prompt="a red ball", model="toy", scores=scores, error=error, text=text).to_dict()


def test_a_click_on_a_batch_row_finds_its_record_even_in_a_sorted_table():
    from vs2demo.results import ScoreResult
    from vs2demo.ui.batch import row_reasoning, selected_record, table_rows

    records = [ScoreResult.from_dict(record) for record in (
        _record("a.mp4", 4, text="<think>Sharp and bright.</think><answer>...</answer>"),
        _record("b.mp4", 2), _record("bad.mp4", 0, error="bad.mp4 could not be read as a video."))]
    rows = table_rows(records).values.tolist()
    # The reader sorted the table: row 0 on screen is b.mp4; its cells decide, not the row number.
    assert selected_record(records, 0, rows[1]).video == "b.mp4"
    assert selected_record(records, 2, rows[2]).video == "bad.mp4"
    assert selected_record(records, 1, None).video == "b.mp4"  # no cells sent: the row number
    assert selected_record(records, 0, ["gone.mp4"] + rows[0][1:]) is None
    panel = row_reasoning(records[0])
    assert "<b>a.mp4</b>" in panel and "Sharp and bright." in panel
    assert "could not be read" in row_reasoning(records[2])


def test_a_click_on_a_best_of_n_row_plays_that_candidate_with_its_place(tmp_path):
    from vs2demo.results import ScoreResult
    from vs2demo.ui.best_of_n import VIDEO_COLUMN, Candidate, candidate_to_play, ranked_table

    candidates = tuple(Candidate(str(tmp_path / name), name, ScoreResult.from_dict(_record(name, visual)))
                       for name, visual in (("dark.mp4", 1), ("clean.mp4", 5), ("noisy.mp4", 3)))
    table = ranked_table(candidates, "visual_quality")
    assert list(table["Video"]) == ["clean.mp4", "noisy.mp4", "dark.mp4"]
    row = table.values.tolist()[2]
    assert row[VIDEO_COLUMN] == "dark.mp4"
    played = candidate_to_play(candidates, "visual_quality", 2, row)
    assert played["value"].endswith("dark.mp4") and played["label"] == "Playing dark.mp4, #3 by visual quality (1.00)"
    # Sorted on screen, so the row number disagrees: the Video cell wins.
    assert candidate_to_play(candidates, "visual_quality", 0, row)["value"].endswith("dark.mp4")


def test_a_thumbnail_is_a_small_inline_picture():
    import base64

    import numpy as np

    from vs2demo.ui.render import thumbnail_cell

    cell = thumbnail_cell(np.full((480, 640, 3), 200, dtype=np.uint8))
    assert cell.startswith("![thumbnail](data:image/jpeg;base64,") and cell.endswith(")")
    picture = base64.b64decode(cell.split(",", 1)[1][:-1])
    assert picture[:2] == b"\xff\xd8" and len(picture) < 4096


def test_streamed_lists_of_records_reach_the_client_whole():
    """server.streamed_diff: the edits between two streamed outputs, as gradio_client applies them.
    Gradio 6.31's own garbles a list whose elements' lists shrink (records re-ordered by /rank);
    when this test's first check fails, Gradio's is fixed and the workaround can go."""
    from gradio_client.utils import apply_diff

    from vs2demo.ui import server
    from vs2demo.ui.app import build_app  # noqa: F401  (building the app installs the workaround)

    server.use_streamed_diff()
    before = [{"tokens": {"p": [0.9, 0.8, 0.7], "alt": [[1, 2], [3], [4, 5, 6]]}}, {"video": "b"}]
    after = [{"tokens": {"p": [0.5], "alt": [[7]]}}]
    try:
        gradio_gives = apply_diff(before, server.GRADIO_DIFF(before, after))
    except IndexError:
        gradio_gives = None
    assert gradio_gives != after  # still broken in Gradio
    assert apply_diff(before, server.streamed_diff(before, after)) == after
    import gradio.utils

    assert gradio.utils.diff is server.streamed_diff


def test_the_model_status_names_how_the_weights_are_held(served_app):
    """"float32 on cpu" for the toy, never "none on cpu"."""
    from vs2demo.ui.app import model_status

    state, message = model_status(served_app[1])
    assert state == "ready" and "float32 on cpu" in message and "none" not in message


def test_the_page_is_built_without_waiting_for_torch_or_transformers():
    """The page comes up while the model's libraries load (with the model, in the loading thread):
    importing the app and building its page imports neither torch nor transformers."""
    import subprocess
    import sys

    code = ("import sys\nfrom vs2demo.scoring import Scorer\nfrom vs2demo.settings import Settings\n"
            "from vs2demo.ui.app import build_app\n"
            "build_app(Scorer(Settings(model='toy', quant='none', device='cpu')))\n"
            "print(sorted(m for m in ('torch', 'transformers', 'torchvision') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
