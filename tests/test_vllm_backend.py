"""The vLLM backend's request and stream reading, without a server: what it sends is what the model
must see (the frames byte for byte, the time step the authors tell, no resize, every frame), and
what it reads back becomes the same Generation the in-process engine gives. Against a real vLLM
server: tests/test_vllm_server.py."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image
from transformers.video_utils import VideoMetadata

from vs2demo.backends.vllm import AnswerReader, VllmBackend, chat_request, frames_data_url, told_metadata
from vs2demo.confidence import TokenConfidence
from vs2demo.errors import ModelLoadError, UserInputError
from vs2demo.settings import ScoreOptions, Settings, settings_from_env
from vs2demo.video import sample_frames

DIGIT_IDS = [16, 17, 18, 19, 20]


@pytest.fixture(scope="module")
def sampled(clean_clip):
    return sample_frames(clean_clip, fps=2.0, max_frames=64, min_pixels=3136, max_pixels=12544)


def test_the_frames_travel_losslessly_as_the_frame_list_vllm_reads(sampled):
    url = frames_data_url(sampled)
    assert url.startswith("data:video/jpeg;base64,")  # the media type that selects vLLM's frame-list reader
    parts = url.split(",")[1:]
    assert len(parts) == sampled.count
    for part, frame in zip(parts, sampled.frames):
        image = Image.open(io.BytesIO(base64.b64decode(part)))
        assert image.format == "PNG"
        assert np.array_equal(np.asarray(image.convert("RGB")), frame)


@pytest.mark.parametrize("count, fps", [(6, 2.0), (64, 2.0), (7, 0.5), (48, 3.0), (5, 0.1), (768, 30.0)])
def test_the_metadata_tells_the_model_the_rate_the_frames_were_asked_for(count, fps):
    """Qwen's processor (in vLLM's environment too) reads the time step off the metadata as
    sampled_fps; it must be the asked-for rate exactly, as in the authors' stack, or positions drift."""
    class Frames:
        pass

    video = Frames()
    video.count = count
    metadata = told_metadata(video, fps)
    assert metadata["num_frames"] == -1  # else vLLM keeps the first 32 frames
    told = VideoMetadata(total_num_frames=metadata["total_num_frames"], fps=metadata["fps"],
                         duration=metadata["duration"], frames_indices=metadata["frames_indices"])
    assert told.sampled_fps == fps
    assert len(metadata["frames_indices"]) == count


def test_the_request_asks_for_the_digits_at_every_step_and_no_resize(sampled):
    options = ScoreOptions(max_new_tokens=300)
    request = chat_request(sampled, "a red ball", options, "toy", DIGIT_IDS, video_url="data:video/jpeg;base64,AA")
    assert request["logprobs"] is True and request["logprob_token_ids"] == DIGIT_IDS
    assert request["return_tokens_as_token_ids"] is True
    assert request["mm_processor_kwargs"] == {"do_resize": False}
    assert request["temperature"] == 0.0 and "seed" not in request and request["n"] == 1
    assert request["max_tokens"] == 300 and request["stream"] is True
    content = request["messages"][0]["content"]
    assert [part["type"] for part in content] == ["video_url", "text"]  # the video first, as in-process
    assert "a red ball" in content[1]["text"]

    sampling = chat_request(sampled, "a red ball", ScoreOptions(do_sample=True, temperature=0.7, seed=3, samples=4),
                            "toy", DIGIT_IDS, video_url="x")
    assert (sampling["temperature"], sampling["seed"], sampling["n"]) == (0.7, 3, 4)


def entry(token: int, logprob: float, digits: dict[int, float] | None = None, text: str | bytes = "") -> dict:
    """A token's log-probability entry as vLLM streams it: its id, log p, its own bytes, the digits' log p."""
    listed = [{"token": f"token_id:{token}", "logprob": logprob}]
    listed += [{"token": f"token_id:{d}", "logprob": lp} for d, lp in (digits or {}).items()]
    raw = text if isinstance(text, bytes) else text.encode()
    return {"token": f"token_id:{token}", "logprob": logprob, "bytes": list(raw), "top_logprobs": listed}


def test_a_stream_becomes_the_answer_its_digit_probabilities_and_token_confidence():
    reader = AnswerReader(DIGIT_IDS)
    reader.add("", [])  # the role chunk
    reader.add("<think>", [entry(900, -0.01, {d: -9.0 for d in DIGIT_IDS}, "<think>")])
    reader.add(" ok", [entry(901, -0.5, {d: -8.0 for d in DIGIT_IDS}, " ok")])
    digits = {16: math.log(0.1), 17: math.log(0.2), 18: math.log(0.6), 19: math.log(0.05), 20: math.log(0.05)}
    reader.add("3", [entry(18, math.log(0.6), digits, "3")])
    reader.add("", [entry(2, -0.001, {d: -20.0 for d in DIGIT_IDS})])  # the end token: no text
    assert reader.text == "<think> ok3"
    assert len(reader.tokens) == 4
    [step] = reader.digit_steps()
    assert step.start == len("<think> ok")
    assert step.probs == pytest.approx((0.1, 0.2, 0.6, 0.05, 0.05))
    confidence = reader.confidence()
    assert confidence.text == reader.text and len(confidence) == 4
    assert confidence.p[2] == pytest.approx(0.6) and not confidence.has_alternatives


IM_END = 151645  # the end of turn: vLLM gives its bytes as "<|im_end|>" while the text skips it


def answer_tokens() -> list[tuple[int, bytes]]:
    """An answer as the model writes it, token by token (id, the token's own bytes): digits, a
    character split over two tokens, and the end of turn, which adds no text."""
    words = ["<think>", " The", " caf", b"\xc3", b"\xa9", " is", " fine", ".", "</think>", "\n\n", "(1)", " visual",
             " quality", ":", " ", "3", "\n", "(2)", " alignment", ":", " ", "4", "\n", "(3)", " physics", ":", "2"]
    tokens = [(DIGIT_IDS[int(w) - 1] if w in ("1", "2", "3", "4", "5") else 1000 + i, w if isinstance(w, bytes) else w.encode())
              for i, w in enumerate(words)]
    return tokens + [(IM_END, b"<|im_end|>")]


def server_chunks(tokens: list[tuple[int, bytes]], sizes: list[int]):
    """The chunks a vLLM server streams when it sends `sizes` tokens at a time: each chunk's text is
    what its tokens completed (special tokens skipped, a character held back until it is whole)."""
    sent, done, at = "", b"", 0
    for size in sizes:
        group, at = tokens[at:at + size], at + size
        done += b"".join(raw for token, raw in group if token != IM_END)
        text = whole_characters(done)
        yield text[len(sent):], [entry(token, -0.1 * (1 + token % 3), {d: -1.0 - d % 5 for d in DIGIT_IDS}, raw)
                                 for token, raw in group]
        sent = text


def whole_characters(data: bytes) -> str:
    """The text of `data` up to its last whole character."""
    for cut in range(len(data), len(data) - 4, -1):
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    raise AssertionError(f"not UTF-8: {data!r}")


def read(chunks) -> AnswerReader:
    reader = AnswerReader(DIGIT_IDS)
    reader.add("", [])  # the role chunk
    for content, entries in chunks:
        reader.add(content, entries)
    return reader


def groupings(total: int):
    """Chunk sizes from 2 to 5 tokens, each shifted so that a digit falls at every place of a chunk."""
    for size in range(2, 6):
        for shift in range(size):
            sizes = ([shift] if shift else []) + [size] * ((total - shift) // size)
            rest = total - sum(sizes)
            yield sizes + ([rest] if rest else [])


def test_chunks_of_several_tokens_give_the_pieces_and_digit_steps_of_one_token_a_chunk():
    tokens = answer_tokens()
    one = read(server_chunks(tokens, [1] * len(tokens)))
    assert one.text == "<think> The café is fine.</think>\n\n(1) visual quality: 3\n(2) alignment: 4\n(3) physics:2"
    assert one.pieces[3:5] == ["", "é"] and one.pieces[-1] == ""  # as in process: a character to the token completing it
    assert [step.start for step in one.digit_steps()] == [one.text.index("3\n"), one.text.index("4\n"), len(one.text) - 1]
    for sizes in groupings(len(tokens)):
        many = read(server_chunks(tokens, sizes))
        assert many.pieces == one.pieces, sizes
        assert many.digit_steps() == one.digit_steps(), sizes
        assert many.tokens == one.tokens and many.chosen_logprob == one.chosen_logprob, sizes


def test_a_digit_with_the_end_of_turn_in_one_chunk_keeps_its_place():
    """The case seen under load: " 4" came as one chunk of " ", "4" and the end of turn."""
    reader = AnswerReader(DIGIT_IDS)
    reader.add(":", [entry(30, -0.1, text=":")])
    digits = {d: math.log(p) for d, p in zip(DIGIT_IDS, (0.05, 0.05, 0.1, 0.7, 0.1))}
    reader.add(" 4", [entry(220, -0.1, text=" "), entry(19, math.log(0.7), digits, "4"),
                      entry(IM_END, -0.01, text="<|im_end|>")])
    assert reader.pieces == [":", " ", "4", ""]
    [step] = reader.digit_steps()
    assert step.start == 2 and step.probs == pytest.approx((0.05, 0.05, 0.1, 0.7, 0.1))


def test_text_no_token_accounts_for_goes_to_the_chunks_last_token():
    # entries without their bytes (an older server): the chunk's text is not lost
    reader = AnswerReader(DIGIT_IDS)
    reader.add("is 4", [{"token": "token_id:1", "logprob": 0.0}, {"token": "token_id:2", "logprob": 0.0}])
    assert reader.pieces == ["", "is 4"] and reader.text == "is 4"


def test_token_confidence_without_alternatives_survives_a_record_round_trip():
    confidence = TokenConfidence.build(["<think", ">Fine", "."], [0.99, 0.5, 0.75])
    data = confidence.to_dict()
    assert set(data) == {"piece", "p"}
    again = TokenConfidence.from_dict(data)
    assert again == confidence and not again.has_alternatives
    assert TokenConfidence.from_dict({"piece": ["a", "b"], "p": [0.5]}) is None  # cut: none rather than wrong


def test_the_backend_is_chosen_by_flag_or_environment_and_checked():
    settings = settings_from_env({"VS2_BACKEND": "vllm", "VS2_VLLM_URL": "http://127.0.0.1:9"})
    assert (settings.backend, settings.vllm_url) == ("vllm", "http://127.0.0.1:9")
    with pytest.raises(UserInputError, match="backend must be one of"):
        Settings(backend="tgi")
    with pytest.raises(UserInputError, match="http://"):
        Settings(backend="vllm", vllm_url="file:///etc/passwd")


def test_a_vllm_label_is_checked_and_keeps_records_of_differently_served_models_apart():
    from dataclasses import replace

    from vs2demo.backends import LoadInfo
    from vs2demo.scoring import record_key, record_settings

    served = settings_from_env({"VS2_BACKEND": "vllm", "VS2_VLLM_URL": "http://127.0.0.1:9", "VS2_VLLM_LABEL": "fp8 on 2 GPUs"})
    assert served.vllm_label == "fp8 on 2 GPUs"
    for bad in ("", "x" * 101, "tab\there"):
        with pytest.raises(UserInputError, match="vllm-label"):
            Settings(backend="vllm", vllm_url="http://127.0.0.1:9", vllm_label=bad)
    with pytest.raises(UserInputError, match="goes with --backend vllm"):
        Settings(vllm_label="bf16")
    info = LoadInfo(backend="vllm", model="TIGER-Lab/VideoScore2", revision="unknown", quant="served", device="server",
                    dtype="served", is_toy=False, load_s=0.0, parameters=0, memory_bytes=0, min_pixels=1, max_pixels=2,
                    total_pixels=3)
    options = ScoreOptions()
    keys = {record_key("ab" * 32, "a prompt", options, replace(info, served_as=label)) for label in (None, "bf16", "fp8")}
    assert len(keys) == 3
    # Unnamed, a record keeps the key it had before labels existed (a resume still finds it).
    assert record_key("ab" * 32, "a prompt", options, info) == (
        "7812dcb49677433f0c0781e59eacb7c8618759c9542236c964a861b6ef0c7564")  # as computed before this change
    assert record_settings(options, replace(info, served_as="fp8"))["served_as"] == "fp8"
    assert "served_as" not in record_settings(options, info)


def test_no_server_at_the_address_is_a_load_error_that_says_what_to_do():
    with pytest.raises(ModelLoadError, match="No vLLM server answers at http://127.0.0.1:9"):
        VllmBackend.load(Settings(model="toy", backend="vllm", vllm_url="http://127.0.0.1:9"))
    with pytest.raises(UserInputError, match="--vllm-url"):
        Settings(model="toy", backend="vllm")


def test_text_that_comes_without_a_token_is_kept_beside_one():
    reader = AnswerReader(DIGIT_IDS)
    reader.add("<", [])
    reader.add("think>", [entry(900, -0.1, text="think>")])
    reader.add("!", [])
    assert reader.text == "<think>!" and reader.pieces == ["<think>!"] and len(reader.tokens) == 1


def test_ctrl_c_while_the_server_starts_stops_it(tmp_path, monkeypatch):
    """`tools.vllm_server` starts vLLM in a session of its own, so a Ctrl-C on the terminal does not
    reach it: start() stops it itself, even when it ignores SIGTERM (vLLM still starting did, for
    over 10 s). Here the server is a stand-in that ignores SIGTERM and never answers."""
    import os
    import signal
    import threading

    from tools import vllm_server

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    started = tmp_path / "started"
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\ntrap '' TERM\necho $$ > {started}\nwhile true; do sleep 0.2; done\n")
    python.chmod(0o755)
    monkeypatch.setattr(vllm_server, "STOP_GRACE_S", 1.0, raising=False)

    def press_ctrl_c():
        while not started.exists():
            threading.Event().wait(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        vllm_server.start("toy", venv=venv, log_path=tmp_path / "log", timeout=60)
    group = int(started.read_text())
    assert not running_in_group(group)  # nothing it started is left


def running_in_group(group: int) -> list:
    import os

    import psutil

    left = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(process)
        except ProcessLookupError:
            pass  # gone meanwhile
    return left


def test_the_vllm_backend_and_a_batch_jobs_frame_budget_need_no_torch_and_no_server():
    """The vLLM backend is an HTTP client: importing it, and reading the frame budget a batch job
    samples with (the checkpoint's own, here the toy's), import neither torch nor transformers and
    ask no server (none listens at the URL)."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from vs2demo.backends import frame_budget\n"
            "from vs2demo.backends.vllm import VllmBackend, served_config\n"
            "from vs2demo.checkpoint import is_toy, vision_geometry\n"
            "from vs2demo.settings import Settings\n"
            "settings = Settings(model='toy', backend='vllm', vllm_url='http://127.0.0.1:9')\n"
            "config = served_config('toy')\n"
            "print(json.dumps([frame_budget(settings), is_toy(config), vision_geometry(config),\n"
            "                  sorted({'torch', 'transformers'} & set(sys.modules))]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    budget, toy, geometry, heavy = json.loads(done.stdout)
    assert budget == [3136, 12544] and toy is True and geometry == [14, 2, 2] and heavy == []
