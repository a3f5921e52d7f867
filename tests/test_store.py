"""The results store: a file people may copy, shared by the app's threads and the CLI, and what a
batch sent again gets from it."""

import sqlite3
import threading
from pathlib import Path

import pytest

from vs2demo.errors import UserInputError
from vs2demo import DIMENSIONS
from vs2demo.results import DimensionScore, ScoreResult, empty_scores
from vs2demo.store import SCHEMA_VERSION, ResultStore, default_store_path, open_store

PROMPT = "A red ball rolls and bounces across a grey studio floor."


def record(key: str, video: str = "a.mp4", error: str | None = None) -> ScoreResult:
    """A record as the model's answer makes it: all three scores, or an error."""
    scores = empty_scores() if error else {k: DimensionScore.from_probs(4, [0, 0, 0, 1, 0]) for k in DIMENSIONS}
    return ScoreResult(video=video, prompt=PROMPT, model="toy", scores=scores, error=error, key=key,
                       video_sha256="ab" * 32, scored_at="2026-11-26T16:00:00+00:00")


def test_the_newest_complete_record_of_a_key_is_served(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite3")
    assert store.get("k") is None
    store.put(record("k", "first.mp4"))
    store.put(record("k", "second.mp4"))
    store.put(record("k", "stopped.mp4", error="Stopped before the model wrote every score."))
    store.put(ScoreResult(video="nokey.mp4", prompt=PROMPT, model="toy"))  # nothing the model answered: not kept
    assert store.get("k").video == "second.mp4" and not store.get("k").stored
    assert [r.video for r in store.records()] == ["first.mp4", "second.mp4", "stopped.mp4"]
    assert len(store) == 3


def test_the_file_is_plain_sqlite_with_its_schema_version(tmp_path):
    path = tmp_path / "r.sqlite3"
    ResultStore(path).put(record("k"))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        video, overall, error = db.execute("SELECT video, overall, error FROM records").fetchone()
    assert (video, error) == ("a.mp4", None) and overall == pytest.approx(4.0)
    # A copy opens anywhere and serves the same records.
    copy = tmp_path / "copy.sqlite3"
    with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    assert ResultStore(copy).get("k").to_dict() == ResultStore(path).get("k").to_dict()


def test_a_store_written_by_a_newer_version_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "r.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(UserInputError, match="newer vs2demo"):
        ResultStore(path)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(UserInputError, match="Cannot open the results store"):
        ResultStore(tmp_path / "a-file" / "r.sqlite3")


def test_threads_and_a_second_connection_share_it(tmp_path):
    path = tmp_path / "r.sqlite3"
    store, other = ResultStore(path), ResultStore(path)  # the app and a CLI run at once
    threads = [threading.Thread(target=lambda n=n: [store.put(record(f"k{n}-{i}")) for i in range(20)]) for n in range(4)]
    for thread in threads:
        thread.start()
    for i in range(20):
        other.put(record(f"cli-{i}"))
    for thread in threads:
        thread.join()
    assert len(store) == len(other) == 100 and other.get("k3-19") is not None


def test_where_it_lives_unless_told(tmp_path, monkeypatch):
    assert default_store_path({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "vs2demo" / "results.sqlite3"
    assert open_store(enabled=False) is None
    assert open_store(environ={"VS2_STORE": "off"}) is None
    assert open_store(environ={"VS2_STORE": str(tmp_path / "s.sqlite3")}).path == tmp_path / "s.sqlite3"


def test_a_batch_sent_again_resumes_from_the_store(served_app, clean_clip, noisy_clip, tmp_path, monkeypatch):
    """What the Batch tab and /batch do after a stop or a failure: the videos done come back at once."""
    from gradio_client import Client, handle_file

    url, scorer = served_app
    monkeypatch.setattr(scorer, "store", ResultStore(tmp_path / "r.sqlite3"))
    client = Client(url, verbose=False)
    _, first = client.predict([handle_file(str(clean_clip))], PROMPT, "", api_name="/batch")
    sampled = []
    real = scorer.sample
    monkeypatch.setattr(scorer, "sample", lambda video, *a: sampled.append(video) or real(video, *a))
    _, second = client.predict([handle_file(str(clean_clip)), handle_file(str(noisy_clip))], PROMPT, "",
                               api_name="/batch")
    assert [r["stored"] for r in second] == [True, False]
    assert {**second[0], "stored": False} == first[0]
    assert len(sampled) == 1 and sampled[0].endswith(noisy_clip.name)  # only the new video reached the model


def test_an_unshared_store_serves_each_session_only_what_it_asked_for(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite3")
    store.put(record("k", "alice.mp4"), owner="alice-session")
    assert store.get("k", owner="alice-session", shared=False).video == "alice.mp4"
    assert store.get("k", owner="mallory-session", shared=False) is None
    assert store.get("k", owner="mallory-session", shared=True).video == "alice.mp4"
    assert store.get("k").video == "alice.mp4"  # the operator (the CLI) is served any
    store.put(record("cli-key", "cli.mp4"))  # the CLI's: owned by the operator, no visitor's
    assert store.get("cli-key", owner="alice-session", shared=False) is None
    with sqlite3.connect(store.path) as db:
        assert "alice-session" not in db.execute("SELECT record FROM records").fetchone()[0]


def test_a_version_1_store_gains_the_owner_column_and_keeps_its_records(tmp_path):
    path = tmp_path / "r.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("CREATE TABLE records (id INTEGER PRIMARY KEY, key TEXT NOT NULL, video_sha256 TEXT, "
                         "video TEXT, prompt TEXT, model TEXT, overall REAL, error TEXT, scored_at TEXT, "
                         "record TEXT NOT NULL); PRAGMA user_version=1;")
        db.execute("INSERT INTO records (key, video, record) VALUES ('k', 'old.mp4', ?)", (record("k", "old.mp4").to_json(),))
    store = ResultStore(path)
    assert store.get("k").video == "old.mp4" and store.get("k", owner="someone", shared=False) is None
    store.put(record("k2", "new.mp4"), owner="someone")
    assert store.get("k2", owner="someone", shared=False).video == "new.mp4"


def test_the_newest_records_and_their_size_are_read_within_a_limit(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite3")
    for n in range(5):
        store.put(record(f"k{n}", f"{n}.mp4"))
    assert [r.video for r in store.records(limit=2)] == ["3.mp4", "4.mp4"]
    assert 0 < store.size_bytes(limit=2) < store.size_bytes() and store.size_bytes(limit=0) == 0


@pytest.mark.parametrize("share,host,link,env,shared", [
    ("auto", None, False, {}, True), ("auto", "127.0.0.1", False, {}, True), ("auto", "localhost", False, {}, True),
    ("auto", "::1", False, {}, True), ("auto", "0.0.0.0", False, {}, False), ("auto", None, True, {}, False),
    ("auto", None, False, {"SPACE_ID": "me/app"}, False), ("auto", None, False, {"GRADIO_SERVER_NAME": "0.0.0.0"}, False),
    ("auto", "my-box.local", False, {}, False), ("on", "0.0.0.0", True, {"SPACE_ID": "x"}, True),
    ("off", "127.0.0.1", False, {}, False),
])
def test_the_store_is_shared_only_where_nobody_else_reaches_the_app(share, host, link, env, shared):
    from vs2demo.settings import store_shared

    assert store_shared(share, host, link, env) is shared


def test_with_no_flag_and_no_variable_the_app_and_the_cli_keep_records_that_export_finds(
        toy_model_dir, clean_clip, tmp_path, monkeypatch, capsys):
    """As a user meets it: a fresh HOME, no --store, no VS2_STORE. The app and the CLI both keep what
    they score in ~/.cache/vs2demo, serve it when asked again, and `export` gets it all out."""
    import importlib.util
    import json
    import socket

    from gradio_client import Client, handle_file

    from vs2demo.__main__ import main
    from vs2demo.ui import app as ui_app

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("VS2_STORE", "XDG_CACHE_HOME", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    kept = home / ".cache" / "vs2demo" / "results.sqlite3"

    score = ["score", str(clean_clip), "--prompt", PROMPT, "--model", str(toy_model_dir), "--device", "cpu",
             "--quant", "none", "--max-frames", "8", "--json"]
    assert main(score) == 0 and kept.is_file()
    first = json.loads(capsys.readouterr().out)
    assert main(score) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["stored"] and "from the results store" in err
    assert {**json.loads(out), "stored": False} == first

    spec = importlib.util.spec_from_file_location("app_entry", Path(__file__).resolve().parents[1] / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.setattr(app, "configure_logging", lambda: None)  # the test session's logging stays as it is
    launched = []
    real_launch = ui_app.launch
    # The real launch, only not blocking this thread, so the test can use the app it started.
    monkeypatch.setattr(ui_app, "launch", lambda demo, **kwargs: launched.append(demo) or real_launch(
        demo, **{**kwargs, "prevent_thread_lock": True, "quiet": True}))
    import gradio as gr

    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert app.main(["--model", "toy", "--quant", "none", "--device", "cpu", "--host", "127.0.0.1",
                     "--port", str(port)]) == 0
    try:
        button = next(c for c in launched[0].config["components"] if c["props"].get("elem_id") == "explore-load-store")
        assert button["props"]["visible"]  # Explore offers this app's results store
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        records = [client.predict(handle_file(str(clean_clip)), PROMPT, api_name="/score") for _ in range(2)]
        assert [r["stored"] for r in records] == [False, True]
    finally:
        launched[0].close()

    capsys.readouterr()
    assert main(["export", "--out", str(tmp_path / "all.csv")]) == 0
    assert len((tmp_path / "all.csv").read_text().splitlines()) == 1 + 2  # the header, the CLI's and the app's
    assert f"2 records from {kept} written" in capsys.readouterr().err
