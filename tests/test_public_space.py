"""The app as a public Space meets it: strangers calling the API (gradio_client and raw HTTP) with
server paths, cancels, too much work, huge bodies, odd values and spreadsheet formulas. On the toy
model, served in this process so the tests can watch what the server is doing."""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from conftest import TEST_MAX_BATCH, TEST_UPLOADS_MAX_MB
from tools.clips import write_clip
from vs2demo import jobs
from vs2demo.settings import ServerLimits, server_limits_from_env
from vs2demo.ui import files
from vs2demo.ui.server import MODEL_EVENT, client_address

PROMPT = "A red ball rolls and bounces across a grey studio floor."  # one colour word: the toy compares it with the ball
REFUSED = "This app opens only videos uploaded with the request"
WORK_THREADS = ("vs2demo-request", "vs2demo-generate", "vs2demo-decode", "vs2demo-resize", "decord-get-batch")


@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)  # a session of its own for each test: cancels are per session


@pytest.fixture
def served_scorer(served_app):
    return served_app[1]


def working(served_scorer) -> list[str]:
    """What the server is doing for requests: their threads, and the requests in line for the model."""
    busy = [t.name for t in threading.enumerate() if t.name.startswith(WORK_THREADS) and t.is_alive()]
    return busy + ["in line for the model"] * served_scorer.slot.in_line()


def wait_for(condition, timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@pytest.fixture
def scorings(served_scorer, monkeypatch):
    """Every video the server samples for the model, in order (a spy on the one place it does)."""
    seen = []
    real = served_scorer.sample

    def sample(video_path, *args, **kwargs):
        seen.append(Path(str(video_path)).name)
        return real(video_path, *args, **kwargs)

    monkeypatch.setattr(served_scorer, "sample", sample)
    return seen


def videos_arg(endpoint: str, video, count: int = 1):
    return video if endpoint == "/score" else [video] * count


def call(client, endpoint: str, video, count: int = 1, **kwargs):
    args = [videos_arg(endpoint, video, count), PROMPT] + ([""] if endpoint == "/batch" else [])
    return client.predict(*args, api_name=endpoint, **kwargs)


def submit(client, endpoint: str, videos: list, **kwargs):
    args = [videos[0] if endpoint == "/score" else videos, PROMPT] + ([""] if endpoint == "/batch" else [])
    return client.submit(*args, api_name=endpoint, **kwargs)


# ---- 1. only the caller's uploads are opened ---------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["/score", "/compare", "/rank", "/batch"])
def test_a_server_path_is_refused_without_revealing_anything_about_it(client, clean_clip, tmp_path, scorings, endpoint):
    private = tmp_path / "private.mp4"
    shutil.copy(clean_clip, private)
    values = [str(private), str(tmp_path / "missing.mp4"), str(tmp_path), "/etc/passwd", "/dev/zero",
              {"path": str(private)}, {"path": str(private), "orig_name": "holiday.mp4"}]
    answers = set()
    for value in values:
        with pytest.raises(AppError) as info:
            call(client, endpoint, value, count=2)
        answers.add(str(info.value))
    # One answer for a video, a missing file, a folder, a text file and a device: no oracle.
    assert len(answers) == 1, answers
    answer = answers.pop()
    assert REFUSED in answer
    assert str(tmp_path) not in answer and "private" not in answer and "passwd" not in answer
    assert scorings == []  # nothing was opened


def test_a_missing_upload_and_a_path_outside_get_the_same_answer_over_raw_http(app_url, clean_clip, tmp_path):
    # A file object with Gradio's `meta` passes Gradio's own check when it names the upload folder;
    # whether such an upload exists must not be told either (uploads are named by their hash).
    fake_upload = files.upload_folder() / ("0" * 64) / "clip.mp4"
    answers = []
    with httpx.Client(base_url=app_url, timeout=60) as http:
        for path in (fake_upload, tmp_path / "nothing.mp4"):
            file = {"path": str(path), "meta": {"_type": "gradio.FileData"}}
            data = [file, PROMPT, "card", 2.0, 64, False, 0.7, 0, 1024, "answer", 1, False]  # raw HTTP gives every parameter
            event = http.post("gradio_api/call/score", json={"data": data}).json()["event_id"]
            answers.append(http.get(f"gradio_api/call/score/{event}").text)
    assert all("event: error" in answer for answer in answers)
    assert REFUSED in answers[0] and str(fake_upload) not in answers[0]
    assert str(tmp_path) not in answers[1]  # Gradio refuses a path outside its folder itself, silently


def test_an_example_clip_is_named_by_its_example_name(client):
    record = client.predict("red_ball_clean.mp4", PROMPT, api_name="/score")
    assert record["video"] == "red_ball_clean.mp4" and record["overall"] is not None


# ---- 2. a cancel stops the work, and the model is held until it has ------------------------------------

@pytest.mark.parametrize("endpoint, count", [("/batch", TEST_MAX_BATCH), pytest.param("/rank", 8, marks=pytest.mark.slow),
                                             pytest.param("/compare", 4, marks=pytest.mark.slow)])
def test_a_cancel_leaves_the_server_idle_within_a_second_and_the_next_job_runs_alone(
        client, served_scorer, clean_clip, scorings, endpoint, count):
    job = submit(client, endpoint, [handle_file(str(clean_clip))] * count)
    assert wait_for(lambda: len(job.outputs()) >= 1, 120), "the first record should stream out"
    cancelled = time.monotonic()
    job.cancel()  # returns once the server has answered the cancel: the work must have stopped by then
    assert not working(served_scorer) or wait_for(lambda: not working(served_scorer), 5), working(served_scorer)
    stopped_s = time.monotonic() - cancelled
    assert stopped_s < 1.0, f"the server worked on for {stopped_s:.2f} s after the cancel"
    started = len(scorings)
    assert started < count  # it did not go on to the end

    # The next job has the model to itself: no other request works beside it.
    alongside = []
    job = client.submit(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    while not job.done():
        alongside.append(sum(name.startswith("vs2demo-request") for name in working(served_scorer)))
        time.sleep(0.01)
    assert job.result()["overall"] is not None
    assert max(alongside) <= 1
    assert len(scorings) == started + 1  # the cancelled job scored nothing more meanwhile


def test_a_cancelled_batch_keeps_what_it_had_finished(client, served_scorer, clean_clip, noisy_clip):
    job = submit(client, "/batch", [handle_file(str(clean_clip)), handle_file(str(noisy_clip))] * 4)
    assert wait_for(lambda: len(job.outputs()) >= 2, 120)
    job.cancel()
    table, records = job.outputs()[-1]
    assert 2 <= len(records) < 8 and all(record["overall"] is not None for record in records)
    assert len(list(csv.DictReader(io.StringIO(table)))) == len(records)
    assert wait_for(lambda: not working(served_scorer), 5)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Two minutes at 10 fps, small frames: 1200 packets to read."""
    frames = np.broadcast_to((np.arange(1200) % 256).astype(np.uint8)[:, None, None, None], (1200, 64, 64, 3))
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", np.ascontiguousarray(frames), fps=10)


def test_a_cancel_during_frame_sampling_stops_the_decoding(client, served_scorer, long_clip, slow_reading):
    read = slow_reading(0.005)  # two minutes of packets: about 6 s to read
    job = client.submit(handle_file(str(long_clip)), PROMPT, api_name="/score")
    assert wait_for(lambda: len(read) >= 40, 60), "sampling should have started"
    job.cancel()
    assert wait_for(lambda: not working(served_scorer), 5), working(served_scorer)
    # The work has stopped, and with it the reading: no packet is read after it (a decoder left
    # running would read on through the 1,200).
    stopped_at = len(read)
    assert not wait_for(lambda: len(read) > stopped_at, 1.0) and stopped_at < 1000


def test_a_cancel_sent_before_the_job_had_an_id_still_stops_it(client, served_scorer, clean_clip, scorings, caplog,
                                                               monkeypatch):
    # gradio_client sends such a cancel without the job's id (it has none yet) and then submits the
    # job all the same; Gradio alone would run it. The upload is slowed so that the cancel surely
    # comes first (without it, the job sometimes had its id already: a flake seen in CI).
    from gradio_client.client import Endpoint

    upload = Endpoint._upload_file

    def slow_upload(self, *args, **kwargs):
        time.sleep(0.5)
        return upload(self, *args, **kwargs)

    monkeypatch.setattr(Endpoint, "_upload_file", slow_upload)
    with caplog.at_level("INFO", logger="vs2demo.ui.server"):
        job = client.submit(handle_file(str(clean_clip)), PROMPT, api_name="/score")
        job.cancel()
        assert wait_for(lambda: "cancelled before it started" in caplog.text, 30), caplog.text
    time.sleep(0.5)
    assert scorings == [] and not working(served_scorer)
    # The cancel stopped that job only: the same session's next job runs.
    assert client.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score")["overall"] is not None
    assert scorings == [clean_clip.name]


@pytest.mark.slow  # 6 s: the turns themselves are tested in test_jobs.py
def test_a_batch_gives_the_model_to_a_waiting_person_between_its_videos(app_url, served_scorer, clean_clip, noisy_clip, scorings):
    batch = submit(Client(app_url, verbose=False), "/batch", [handle_file(str(clean_clip))] * 6)
    assert wait_for(lambda: len(scorings) >= 1, 120)
    single = Client(app_url, verbose=False).submit(handle_file(str(noisy_clip)), PROMPT, api_name="/score")
    assert single.result(timeout=120)["overall"] is not None
    finished_before = scorings.index(noisy_clip.name)
    assert finished_before < 4, scorings  # it waited for at most one of the batch's videos, not all six
    assert len(batch.result(timeout=120)[1]) == 6


# ---- 3. bounded work ------------------------------------------------------------------------------------

def test_a_batch_over_the_limit_is_refused_with_what_to_do(client, clean_clip, scorings):
    with pytest.raises(AppError, match=f"Batch takes 1 to {TEST_MAX_BATCH} videos; {TEST_MAX_BATCH + 1} were given"):
        call(client, "/batch", handle_file(str(clean_clip)), count=TEST_MAX_BATCH + 1)
    assert scorings == []


def test_a_csv_naming_one_upload_many_times_counts_each_row_against_the_limit(client, clean_clip, scorings):
    """The bound is on scorings: one upload and a CSV of many rows naming it is many scorings."""
    rows = "video,prompt\n" + "".join(f"{clean_clip.name},{PROMPT} take {n}\n" for n in range(TEST_MAX_BATCH + 1))
    with pytest.raises(AppError, match=f"This batch has {TEST_MAX_BATCH + 1} rows .* at most {TEST_MAX_BATCH}"):
        client.predict([handle_file(str(clean_clip))], "", rows, api_name="/batch")
    assert scorings == []


def test_the_batch_tab_plans_no_more_rows_than_the_limit(clean_clip):
    from vs2demo.errors import UserInputError
    from vs2demo.batch import plan_batch

    pairs = [(clean_clip.name, f"take {n}") for n in range(5)] + [("missing.mp4", "x")]
    assert len(plan_batch([str(clean_clip)], pairs, most=6)) == 6
    with pytest.raises(UserInputError, match="This batch has 6 rows \\(5 to score"):
        plan_batch([str(clean_clip)], pairs, most=5)


@pytest.fixture
def kept(served_scorer, tmp_path, monkeypatch):
    """The served app with a results store of this test's own."""
    from vs2demo.store import ResultStore

    store = ResultStore(tmp_path / "results.sqlite3")
    monkeypatch.setattr(served_scorer, "store", store)
    return store


@pytest.mark.parametrize("shared", [False, True])
def test_a_stored_record_is_served_only_to_its_own_session_unless_the_store_is_shared(
        app_url, served_scorer, kept, clean_clip, scorings, monkeypatch, shared):
    monkeypatch.setattr(served_scorer, "store_shared", shared)
    alice, mallory = Client(app_url, verbose=False), Client(app_url, verbose=False)
    first = alice.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    again = alice.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    guessed = mallory.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    assert not first["stored"] and again["stored"] and again["scored_at"] == first["scored_at"]
    assert guessed["stored"] is shared
    assert len(scorings) == (1 if shared else 2)


def test_explore_offers_the_store_only_where_it_is_shared(served_scorer, kept, monkeypatch):
    from vs2demo.ui.app import store_for_explore

    monkeypatch.setattr(served_scorer, "store_shared", False)
    assert store_for_explore(served_scorer) is None
    monkeypatch.setattr(served_scorer, "store_shared", True)
    assert store_for_explore(served_scorer)() == ([], 0)


def test_a_record_the_store_cannot_keep_is_returned_with_a_warning(client, served_scorer, kept, clean_clip):
    """A full disk, as SQLite meets it: the file may not grow by one more page."""
    pages = kept._db.execute("PRAGMA page_count").fetchone()[0]
    kept._db.execute(f"PRAGMA max_page_count={pages}")
    record = client.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    assert record["scores"]["visual_quality"]["score"] is not None
    assert "not kept in the results store" in record["store_error"] and "full" in record["store_error"]
    assert len(kept) == 0


def http_exchange(url: str, head: str, body_parts) -> str:
    """Sends a raw request (headers, then the body in parts) and returns the status line, whether
    or not the server read the whole body."""
    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the rest was sent
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < body_length(reply):
            part = sock.recv(65536)
            if not part:
                break
            reply += part
    text = reply.decode("latin-1", "replace")
    return text.split("\r\n", 1)[0] + " " + text.split("\r\n\r\n", 1)[-1]


def body_length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_request_bodies_are_refused_before_they_are_read(app_url):
    path = urlparse(app_url).path.rstrip("/") + "/gradio_api/call/batch"
    host = urlparse(app_url).netloc
    before = resident_mb()
    for _ in range(4):  # four 100 MB bodies, as announced by their Content-Length
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {100 * 2**20}\r\n\r\n"
        reply = http_exchange(app_url, head, [b'{"data": [[], "", "' + b"x" * 65536])
        assert " 413 " in reply and "larger than 1024 KiB" in reply
    # A body that does not say its length is counted as it comes, and refused at the limit.
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 65536
    reply = http_exchange(app_url, head, [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 64)
    assert " 413 " in reply
    assert resident_mb() - before < 50


def test_text_fields_have_limits_that_say_so(client, clean_clip):
    with pytest.raises(AppError, match="at most 256 KiB"):
        client.predict([handle_file(str(clean_clip))], PROMPT, "video,prompt\n" + "a.mp4,x\n" * 40_000, api_name="/batch")
    with pytest.raises(AppError, match="at most 2,000 are accepted"):
        client.predict(handle_file(str(clean_clip)), "word " * 1000, api_name="/score")


# ---- 3b. one client cannot hold the queue ----------------------------------------------------------------

# A quick /score over raw HTTP (every parameter given): an example clip by name, 4 frames, 16 tokens.
QUICK_SCORE = ["red_ball_clean.mp4", PROMPT, "card", 2.0, 4, False, 0.7, 0, 16, "answer", 1, False]


@contextmanager
def model_held(scorer):
    """The test holds the model: every request that reaches it waits in line, in flight."""
    with scorer.slot.turn(jobs.CancelToken()) as waiting:
        for _ in waiting:
            pass
        yield


def finished(http, event_id: str) -> str:
    """Reads a /call event's stream to its end; returns its last event's kind."""
    return http.get(f"gradio_api/call/score/{event_id}").text.strip().split("\n\n")[-1].split("\n")[0]


def test_one_address_has_only_so_many_model_requests_waiting_or_running(app_url, served_scorer):
    most = ServerLimits().max_requests_per_client  # the served app's
    assert 2 * most <= MODEL_EVENT["concurrency_limit"]  # below, two addresses' requests all run at once
    # Another address than the page's: 127.0.0.2 is not a proxy uvicorn trusts, so its
    # X-Forwarded-For is a header like any other.
    stranger = httpx.Client(base_url=app_url, timeout=60, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with model_held(served_scorer):
        # Posing as a new client each time (a made-up forwarded address; /call makes a new session).
        events = [stranger.post("gradio_api/call/score", json={"data": QUICK_SCORE},
                                headers={"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(most)]
        assert [event.status_code for event in events] == [200] * most
        refused = stranger.post("gradio_api/call/score", json={"data": QUICK_SCORE}, headers={"X-Forwarded-For": "198.51.100.1"})
        assert refused.status_code == 429
        assert refused.json()["detail"].startswith(f"You already have {most} requests waiting or running; wait for one")

        # Another address is not held up by the first one's requests; gradio_client's queue/join
        # holds it to the same limit.
        visitor = Client(app_url, verbose=False)
        kept = [visitor.submit("red_ball_clean.mp4", PROMPT, max_frames=4, max_new_tokens=16, api_name="/score")
                for _ in range(most)]
        assert wait_for(lambda: served_scorer.slot.in_line() == 1 + 2 * most, 30), served_scorer.slot.in_line()
        with pytest.raises(httpx.HTTPStatusError) as info:
            visitor.submit("red_ball_clean.mp4", PROMPT, api_name="/score").result(timeout=30)
        assert info.value.response.status_code == 429
        assert "You already have" in info.value.response.json()["detail"]

    # Once one of its requests has finished, the address may ask again.
    assert finished(stranger, events[0].json()["event_id"]) == "event: complete"
    again = stranger.post("gradio_api/call/score", json={"data": QUICK_SCORE})
    assert again.status_code == 200
    for event in [*events[1:], again]:
        assert finished(stranger, event.json()["event_id"]) == "event: complete"
    assert all(job.result(timeout=60)["video"] == "red_ball_clean.mp4" for job in kept)
    stranger.close()


def test_behind_a_proxy_the_client_is_the_address_the_proxy_saw():
    def scope(forwarded: str, peer: str = "10.16.3.80"):
        return {"client": (peer, 41000), "headers": [(b"x-forwarded-for", forwarded.encode())]}

    # A Space: its proxy appends the address it was called from; what the client wrote stands left of it.
    assert client_address(scope("203.0.113.5"), 1) == "203.0.113.5"
    assert client_address(scope("1.1.1.1, 2.2.2.2, 203.0.113.5"), 1) == "203.0.113.5"
    assert client_address(scope("1.1.1.1, 203.0.113.5:443, 10.0.0.2"), 2) == "203.0.113.5"
    # One machine commonly holds a whole IPv6 /64: it counts as one client.
    assert client_address(scope("1.1.1.1, [2001:db8::1]:443"), 1) == client_address(scope("2001:db8::2"), 1)
    assert client_address(scope("2001:db8::1"), 1) != client_address(scope("2001:db8:0:1::1"), 1)
    # With no proxy counted, the header is not read.
    assert client_address(scope("1.1.1.1"), 0) == "10.16.3.80"
    assert server_limits_from_env({"SPACE_ID": "someone/vs2demo"}).proxy_hops == 1
    assert server_limits_from_env({"SPACE_ID": "someone/vs2demo", "VS2_PROXY_HOPS": "2"}).proxy_hops == 2
    assert server_limits_from_env({}).proxy_hops == 0


# ---- 4. exports a spreadsheet will not run ------------------------------------------------------------

def test_a_formula_in_a_prompt_or_a_file_name_is_neutralised_in_the_csv_and_exact_in_the_json(client, clean_clip, tmp_path):
    named = tmp_path / "@cmd.mp4"
    shutil.copy(clean_clip, named)
    formula = '=HYPERLINK("http://example.com/steal","click me")'
    prompts = f'video,prompt\n{named.name},"{formula.replace(chr(34), chr(34) * 2)}"\n{clean_clip.name},-2+3 {PROMPT}\n'
    table, records = client.predict([handle_file(str(named)), handle_file(str(clean_clip))], "", prompts, api_name="/batch")
    rows = list(csv.DictReader(io.StringIO(table)))
    assert rows[0]["video"] == "'@cmd.mp4" and rows[0]["prompt"] == "'" + formula
    assert rows[1]["prompt"] == f"'-2+3 {PROMPT}"
    assert [r["prompt"] for r in records] == [formula, f"-2+3 {PROMPT}"] and records[0]["video"] == "@cmd.mp4"


# ---- 7. odd values: one check, clear messages, no traceback -------------------------------------------

@pytest.mark.parametrize("name, value, expected", [
    ("seed", 2**64, "seed must be a whole number from 0 to 4,294,967,295"),
    ("seed", "abc", "seed must be a whole number"),
    ("max_frames", "64", "max_frames must be a whole number from 4 to 768, not '64'"),
    ("max_frames", 4.5, "max_frames must be a whole number"),
    ("do_sample", "yes", "do_sample must be true or false, not 'yes'"),
    ("fps", "fast", "fps must be a number from 0.1 to 30"),
    ("template", "mine", "template must be one of card, eval"),
])
def test_odd_values_get_a_clear_message_and_no_traceback(client, clean_clip, scorings, capfd, name, value, expected):
    options = {name: value, "do_sample": True} if name == "seed" else {name: value}
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score", **options)
    assert expected in str(info.value)
    assert scorings == []
    assert "Traceback" not in capfd.readouterr().err  # a user's mistake is one log line


# ---- 6b. the room for uploads -----------------------------------------------------------------------------

def upload(http, name: str, content: bytes) -> httpx.Response:
    """An upload as the page and gradio_client send it."""
    return http.post("gradio_api/upload", files=[("files", (name, content, "application/octet-stream"))])


def age(path: Path, seconds: float) -> None:
    """Makes an upload (its folder and file) look last used `seconds` ago."""
    then = time.time() - seconds
    for entry in (path, path.parent):
        os.utime(entry, (then, then))


def test_uploads_fill_a_bounded_room_and_the_oldest_unused_make_way(app_url, served_scorer, long_clip, slow_reading):
    room = TEST_UPLOADS_MAX_MB * 10**6
    size = int(room * 0.4)  # two fit, three do not
    made = []
    try:
        with httpx.Client(base_url=app_url, timeout=60) as http:
            for name in ("first.bin", "second.bin"):
                reply = upload(http, name, name.encode() * (size // len(name)))
                assert reply.status_code == 200, reply.text
                made.append(Path(reply.json()[0]))
            third = name.encode().upper() * (size // len(name))
            refused = upload(http, "third.bin", third)
            assert refused.status_code == 507
            assert refused.json()["detail"].startswith("The room for uploads on this server is full")
            assert "try again later" in refused.json()["detail"]

            # A request works with the oldest upload; the first of the two others is no longer used.
            read = slow_reading(0.005)
            client = Client(app_url, verbose=False)
            job = client.submit(handle_file(str(long_clip)), PROMPT, api_name="/score")
            assert wait_for(lambda: len(read) >= 10, 60), "sampling should have started"
            in_use = next(files.upload_folder().glob(f"*/{long_clip.name}"))
            age(in_use, files.UPLOAD_GRACE_S + 120)
            age(made[0], files.UPLOAD_GRACE_S + 60)
            reply = upload(http, "third.bin", third)
            assert reply.status_code == 200, reply.text
            made.append(Path(reply.json()[0]))
            assert not made[0].exists()  # the oldest unused went
            assert in_use.exists() and made[1].exists() and made[2].exists()
            job.cancel()
    finally:
        for path in made:
            shutil.rmtree(path.parent, ignore_errors=True)


def test_an_upload_larger_than_the_room_is_refused_before_it_is_read(app_url):
    address = urlparse(app_url)
    before = set(files.upload_folder().iterdir())
    head = (f"POST {address.path.rstrip('/')}/gradio_api/upload HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Content-Type: multipart/form-data; boundary=cut\r\nContent-Length: {10**9}\r\n\r\n")
    reply = http_exchange(app_url, head, [b'--cut\r\nContent-Disposition: form-data; name="files"; filename="a.bin"\r\n\r\n'
                                          + b"x" * 65536])
    assert " 413 " in reply and "larger than all the room this server keeps for uploads" in reply
    assert set(files.upload_folder().iterdir()) == before


def test_an_upload_to_a_nearly_full_disk_is_refused_with_what_to_do(client, clean_clip, monkeypatch):
    monkeypatch.setattr(files, "MIN_FREE_DISK_BYTES", shutil.disk_usage(files.upload_folder()).total)
    with pytest.raises(httpx.HTTPStatusError) as info:  # gradio_client uploads as it submits
        client.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score")
    assert info.value.response.status_code == 507
    assert info.value.response.json()["detail"].startswith("The server's disk is nearly full.")


# ---- 6. files left behind -------------------------------------------------------------------------------

def use_own_folders(tmp_path: Path, monkeypatch) -> None:
    """The app's folders chosen as build_app chooses them, with `tmp_path` as the temporary folder."""
    monkeypatch.setattr(files, "ROOT", tmp_path / "vs2demo")
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")  # not set: the app sets it (and it is restored after the test)
    files.use_own_upload_folder()


def test_old_uploads_and_downloads_are_deleted_and_recent_ones_kept(tmp_path, monkeypatch):
    import asyncio
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    use_own_folders(tmp_path, monkeypatch)
    old = time.time() - files.MAX_AGE_S - 60
    recent = Path(files.write_download("{}", "recent", ".json"))
    stale = Path(files.write_download("{}", "stale", ".json"))
    upload = files.upload_folder() / ("f" * 64) / "clip.mp4"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"video")
    for path in (stale, stale.parent, upload, upload.parent):
        os.utime(path, (old, old))

    asyncio.run(start_and_stop())
    assert recent.exists()
    assert not stale.parent.exists() and not upload.parent.exists()


async def start_and_stop():
    from vs2demo.ui import server

    async with server.lifespan(None):  # what the app does when it starts
        pass


def test_the_sweep_deletes_only_inside_the_folder_the_app_made_and_marked(tmp_path, monkeypatch, caplog):
    import asyncio
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    checkout = tmp_path / "vs2demo-my-checkout"  # a folder of the same prefix that is someone's work
    theirs = tmp_path / "vs2demo"  # one of the app's own name that the app did not make
    for path in (checkout / ".git" / "HEAD", checkout / "app.py", theirs / "downloads" / "notes" / "todo.txt",
                 theirs / "uploads" / ("e" * 64) / "holiday.mp4"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    long_ago = time.time() - 10 * files.MAX_AGE_S
    for path in [*checkout.rglob("*"), *theirs.rglob("*"), checkout, theirs]:
        os.utime(path, (long_ago, long_ago))

    with caplog.at_level("WARNING", logger="vs2demo.ui.files"):
        use_own_folders(tmp_path, monkeypatch)
    stale = Path(files.write_download("{}", "stale", ".json"))
    os.utime(stale, (long_ago, long_ago))
    os.utime(stale.parent, (long_ago, long_ago))
    asyncio.run(start_and_stop())

    assert sorted(p.relative_to(tmp_path) for p in checkout.rglob("*")) == [
        Path("vs2demo-my-checkout/.git"), Path("vs2demo-my-checkout/.git/HEAD"), Path("vs2demo-my-checkout/app.py")]
    assert (theirs / "downloads" / "notes" / "todo.txt").exists() and (theirs / "uploads" / ("e" * 64)).exists()
    # The app took a folder of its own beside them, marked, and said so; its own old files do go.
    own = files.own_folder()
    assert own == tmp_path / "vs2demo-2" and (own / files.MARKER).is_file()
    assert files.upload_folder() == own / "uploads" and files.owns_upload_folder()
    assert f"{theirs} is not this app's" in caplog.text
    assert not stale.parent.exists()


def test_an_upload_folder_the_user_chose_is_left_to_gradio(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "ROOT", tmp_path / "vs2demo")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "shared-gradio"))
    other_apps_file = tmp_path / "shared-gradio" / "abc" / "theirs.png"
    other_apps_file.parent.mkdir(parents=True)
    other_apps_file.write_bytes(b"png")
    os.utime(other_apps_file.parent, (0, 0))
    os.utime(other_apps_file, (0, 0))
    files.sweep()
    assert other_apps_file.exists()



def test_an_upload_in_use_is_kept_by_the_sweep(tmp_path, monkeypatch):
    use_own_folders(tmp_path, monkeypatch)
    old = time.time() - files.MAX_AGE_S - 60
    in_use, forgotten = (files.upload_folder() / name / "clip.mp4" for name in ("a" * 64, "b" * 64))
    for upload in (in_use, forgotten):
        upload.parent.mkdir(parents=True)
        upload.write_bytes(b"video")
        os.utime(upload, (old, old))
        os.utime(upload.parent, (old, old))
    files.uploaded_path(str(in_use))  # a request opens it (an hour after its first upload)
    files.sweep()
    assert in_use.exists() and not forgotten.exists()


def test_cancels_naming_made_up_sessions_do_not_grow_without_end(monkeypatch):
    from vs2demo.ui import server

    monkeypatch.setattr(server, "PENDING_CANCEL_MAX", 100)
    pending = server.PendingCancels()
    for number in range(1000):
        pending.note(f"session{number}_3")
    assert not pending.take("session0_3") and pending.take("session999_3")
    assert len(pending._noted) == 99
