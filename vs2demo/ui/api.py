"""The named API endpoints: /score (streams), /compare, /rank, /batch. Each returns result records
(the same JSON as the CLI's `--json`). Typed with `gr.api`, so gradio_client uploads the files and
every parameter after the first two has a default."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import gradio as gr
from gradio.data_classes import FileData

from ..engine import ScoreUpdate
from ..errors import ModelLoadError, UserInputError
from ..results import RANK_KEYS, ScoreResult, rank, read_batch_csv, results_to_csv
from . import runtime as rt

MAX_VIDEOS = 16


def local_path(file) -> str:
    """The server-side path of an uploaded file. Gradio itself refuses a path that was not uploaded
    with the request (InvalidPathError), so a client cannot make the server open arbitrary files."""
    if file is None:
        raise UserInputError("No video given.")
    return str(file.get("path") if isinstance(file, dict) else getattr(file, "path", file))


def update_dict(update: ScoreUpdate) -> dict:
    parsed = update.parsed
    return {
        "stage": update.stage,
        "text": update.text,
        "scores": dict(parsed.scores) if parsed is not None else {},
        "new_tokens": update.new_tokens,
    }


def register(runtime: rt.ModelRuntime) -> None:
    """Adds the endpoints to the Blocks being built; model endpoints share one queue slot."""
    defaults = runtime.settings.options
    model_event = {"concurrency_id": "model", "concurrency_limit": 1}

    def options_for(template, fps, max_frames, do_sample, temperature, seed, max_new_tokens):
        return defaults.with_changes(template=template, fps=fps, max_frames=max_frames, do_sample=do_sample,
                                     temperature=temperature, seed=seed if do_sample else None,
                                     max_new_tokens=max_new_tokens)

    def score(video: FileData, prompt: str, template: str = defaults.template, fps: float = defaults.fps,
              max_frames: int = defaults.max_frames, do_sample: bool = defaults.do_sample,
              temperature: float = defaults.temperature, seed: int = 0,
              max_new_tokens: int = defaults.max_new_tokens) -> Iterator[dict]:
        """Score one video against its prompt. Streams {stage, text, scores, new_tokens} while the model
        writes, then the result record."""
        try:
            options = options_for(template, fps, max_frames, do_sample, temperature, seed, max_new_tokens)
            for update in rt.score_stream(runtime, local_path(video), prompt, options):
                yield update.to_dict() if isinstance(update, ScoreResult) else update_dict(update)
        except (UserInputError, ModelLoadError) as exc:
            raise gr.Error(str(exc)) from None

    def score_all(videos, prompts, options) -> list[ScoreResult]:
        if not videos:
            raise gr.Error("No videos given.")
        if len(videos) > MAX_VIDEOS:
            raise gr.Error(f"At most {MAX_VIDEOS} videos at once; {len(videos)} were given.")
        results = []
        for video, prompt in zip(videos, prompts):
            try:
                path = local_path(video)
            except UserInputError as exc:
                results.append(runtime.failed("", prompt, str(exc), options))
                continue
            results.append(rt.score_to_result(runtime, path, prompt, options))
        return results

    def compare(videos: list[FileData], prompt: str, prompts: list[str] | None = None,
                template: str = defaults.template, fps: float = defaults.fps, max_frames: int = defaults.max_frames,
                max_new_tokens: int = defaults.max_new_tokens) -> list[dict]:
        """Score 2-4 videos one after another; `prompts` (one per video) override `prompt` where given.
        Returns the records in input order."""
        if not videos or not 2 <= len(videos) <= 4:
            raise gr.Error("Compare takes two to four videos.")
        own = list(prompts or []) + [""] * len(videos)
        per_video = [(own[i] or "").strip() or prompt for i in range(len(videos))]
        options = options_for(template, fps, max_frames, False, defaults.temperature, 0, max_new_tokens)
        return [r.to_dict() for r in score_all(videos, per_video, options)]

    def rank_videos(videos: list[FileData], prompt: str, by: str = "overall", template: str = defaults.template,
                    fps: float = defaults.fps, max_frames: int = defaults.max_frames,
                    max_new_tokens: int = defaults.max_new_tokens) -> list[dict]:
        """Best of N: score up to 16 candidates for one prompt; records best first, each with its `rank`."""
        if by not in RANK_KEYS:
            raise gr.Error(f"by must be one of {', '.join(RANK_KEYS)}.")
        options = options_for(template, fps, max_frames, False, defaults.temperature, 0, max_new_tokens)
        ranked = rank(score_all(videos, [prompt] * len(videos or []), options), by=by)
        return [{"rank": place, **r.to_dict()} for place, r in enumerate(ranked, start=1)]

    def batch(videos: list[FileData], prompt: str = "", prompts_csv: str = "", template: str = defaults.template,
              fps: float = defaults.fps, max_frames: int = defaults.max_frames,
              max_new_tokens: int = defaults.max_new_tokens) -> tuple[str, list[dict]]:
        """Score many videos: one prompt for all, or `prompts_csv` text with `video,prompt` rows (video =
        file name). Returns the CSV table and the records; failed videos carry their error."""
        if not videos:
            raise gr.Error("No videos given.")
        paths = []
        for video in videos:
            try:
                paths.append(local_path(video))
            except UserInputError as exc:
                raise gr.Error(str(exc)) from None
        try:
            by_name = dict(read_batch_csv(prompts_csv)) if prompts_csv.strip() else {}
        except UserInputError as exc:
            raise gr.Error(str(exc)) from None
        options = options_for(template, fps, max_frames, False, defaults.temperature, 0, max_new_tokens)
        results = []
        for path in paths:
            video_prompt = by_name.get(Path(path).name) or prompt
            results.append(rt.score_to_result(runtime, path, video_prompt, options))
        return results_to_csv(results), [r.to_dict() for r in results]

    gr.api(score, api_name="score", **model_event)
    gr.api(compare, api_name="compare", **model_event)
    gr.api(rank_videos, api_name="rank", **model_event)
    gr.api(batch, api_name="batch", **model_event)
