"""The named API endpoints: /score, /compare, /rank, /batch. Each streams result records (the same
JSON as the CLI's `--json`) and ends with its full answer. Typed with `gr.api`, so gradio_client
uploads the files and every parameter after the first two has a default.

What a caller may send: videos as uploaded files (gradio_client's `handle_file`) or an example
clip's name; nothing else is opened (`files.api_video`). Every option goes through the one check
the page and the CLI use (`settings.request_options`). A cancel stops the work within a second,
wherever it is, and keeps the model until it has stopped (`server.cancellable`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import gradio as gr
from gradio.data_classes import FileData

from ..errors import UserInputError
from ..records_io import results_to_csv
from ..batch import BatchItem, plan_batch, read_batch_csv
from ..ranking import RANK_KEYS, standings
from ..results import ScoreResult
from ..scoring import ScoreUpdate
from ..settings import ScoreOptions, checked_choice, request_options
from . import files
from .render import UpdatePacer
from .server import MODEL_EVENT, cancellable

log = logging.getLogger(__name__)

MAX_VIDEOS = 16  # /compare takes 2-4 and /rank up to this many; /batch is bounded by the settings' max_batch


def update_dict(update: ScoreUpdate) -> dict:
    parsed = update.parsed
    data = {
        "stage": update.stage.value,
        "text": update.text,
        "scores": dict(parsed.scores) if parsed is not None else {},
        "new_tokens": update.new_tokens,
    }
    if update.ahead is not None:
        data["ahead"] = update.ahead
    if update.samples:
        data["samples"] = list(update.samples)
    return data


def refusal(endpoint: str, exc: Exception) -> gr.Error:
    """A user's mistake, said to the caller and logged in one line (no traceback)."""
    log.info("/%s refused: %s", endpoint, exc)
    return gr.Error(str(exc), print_exception=False)


def video_paths(videos, least: int, most: int, what: str) -> list[str]:
    """Every video checked before any work: one that may not be opened refuses the request."""
    if not isinstance(videos, list) or not videos:
        raise UserInputError(f"No videos given: {what} takes a list of uploaded videos.")
    if not least <= len(videos) <= most:
        raise UserInputError(f"{what} takes {least} to {most} videos; {len(videos)} were given."
                             + (f" Split them into requests of at most {most}." if len(videos) > most else ""))
    paths = []
    for number, video in enumerate(videos, start=1):
        try:
            paths.append(files.api_video(video))
        except UserInputError as exc:
            raise UserInputError(f"Video {number}: {exc}") from None
    return paths


def text(name: str, value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserInputError(f"{name} must be text.")
    return value


def options_for(defaults: ScoreOptions, template, fps, max_frames, do_sample, temperature, seed, max_new_tokens,
                reading, samples=1, attention=False) -> ScoreOptions:
    return request_options(defaults, template=template, fps=fps, max_frames=max_frames, do_sample=do_sample,
                           temperature=temperature, seed=seed, max_new_tokens=max_new_tokens, reading=reading,
                           samples=samples, attention=attention)


def records_so_far(score_many, items: list[BatchItem], options: ScoreOptions) -> Iterator[list[ScoreResult]]:
    """The records so far after each video; a video that fails is a record with its error."""
    for step in score_many(items, options):
        if step.update is None:
            yield step.results


def register(score, score_many, defaults: ScoreOptions, max_batch: int) -> None:
    """Adds the endpoints to the Blocks being built; they share the model (`server.MODEL_EVENT`).
    `score` and `score_many` are scoring.Scorer's; `max_batch` bounds /batch. Each endpoint is made
    by a function of its own, so that its signature carries the app's defaults (gr.api reads it)."""
    gr.api(score_endpoint(score, defaults), api_name="score", **MODEL_EVENT)
    gr.api(compare_endpoint(score_many, defaults), api_name="compare", **MODEL_EVENT)
    gr.api(rank_endpoint(score_many, defaults), api_name="rank", **MODEL_EVENT)
    gr.api(batch_endpoint(score_many, defaults, max_batch), api_name="batch", **MODEL_EVENT)


def score_endpoint(score, defaults: ScoreOptions):
    @cancellable
    def score_video(video: FileData, prompt: str, template: str = defaults.template, fps: float = defaults.fps,
                    max_frames: int = defaults.max_frames, do_sample: bool = defaults.do_sample,
                    temperature: float = defaults.temperature, seed: int = 0,
                    max_new_tokens: int = defaults.max_new_tokens, reading: str = defaults.reading,
                    samples: int = 1, attention: bool = False) -> Iterator[dict]:
        """Score one video against its prompt. Streams {stage, text, scores, new_tokens} while the model
        writes, at most 6 a second, each with all the text so far (stage "waiting" with `ahead` while
        others use the model), then the result record (marked
        "stored": true when it came from the results store). A video that cannot be read is refused
        with the reason. `samples` K (2-16, with do_sample): K answers at once, streamed as `samples`
        (each one's text so far); the record holds them, their `agreement` and their combined scores.
        `attention`: where it looked, each score's attention over the frames and the prompt's words, in
        the record's `attention` (transformers backend only; through vLLM the request is refused)."""
        try:
            path = files.api_video(video)
            options = options_for(defaults, template, fps, max_frames, do_sample, temperature, seed, max_new_tokens,
                                  reading, samples, attention)
            pacer = UpdatePacer()  # each update carries all the text, so one skipped loses nothing
            for update in score(path, text("prompt", prompt), options):
                if not isinstance(update, ScoreResult):
                    if not pacer.skip(update):
                        yield update_dict(update)
                elif update.error and not update.text:  # nothing was scored: a refusal, as for a bad option
                    raise UserInputError(update.error)
                else:
                    yield update.to_dict()
        except UserInputError as exc:
            raise refusal("score", exc) from None

    return score_video


def compare_endpoint(score_many, defaults: ScoreOptions):
    @cancellable
    def compare(videos: list[FileData], prompt: str, prompts: list[str] | None = None,
                template: str = defaults.template, fps: float = defaults.fps, max_frames: int = defaults.max_frames,
                do_sample: bool = defaults.do_sample, temperature: float = defaults.temperature, seed: int = 0,
                max_new_tokens: int = defaults.max_new_tokens, reading: str = defaults.reading) -> Iterator[list[dict]]:
        """Score 2-4 videos one after another; `prompts` (one per video) override `prompt` where given.
        Streams the records so far, in input order, as each video finishes."""
        try:
            paths = video_paths(videos, 2, 4, "Compare")
            options = options_for(defaults, template, fps, max_frames, do_sample, temperature, seed, max_new_tokens,
                                  reading)
            shared = text("prompt", prompt)
            own = list(prompts or []) + [""] * len(paths)
            # As given: the scorer strips a prompt, or not under the authors' template (prompts.clean_prompt).
            items = [BatchItem(Path(path).name, path, own[i] if text("prompts", own[i]).strip() else shared)
                     for i, path in enumerate(paths)]
        except UserInputError as exc:
            raise refusal("compare", exc) from None
        for results in records_so_far(score_many, items, options):
            yield [r.to_dict() for r in results]

    return compare


def rank_endpoint(score_many, defaults: ScoreOptions):
    @cancellable
    def rank_videos(videos: list[FileData], prompt: str, by: str = "overall", template: str = defaults.template,
                    fps: float = defaults.fps, max_frames: int = defaults.max_frames,
                    do_sample: bool = defaults.do_sample, temperature: float = defaults.temperature, seed: int = 0,
                    max_new_tokens: int = defaults.max_new_tokens,
                    reading: str = defaults.reading) -> Iterator[list[dict]]:
        """Best of N: score up to 16 candidates for one prompt. Streams the ranking of the videos scored so
        far, best first, each record with its `rank` (1 is the best) and `tied`: videos within 0.05 of
        each other tie and share a rank (1, 1, 3), as on the page; a video that failed has rank null."""
        try:
            checked_choice("by", by, RANK_KEYS)
            paths = video_paths(videos, 1, MAX_VIDEOS, "Rank")
            options = options_for(defaults, template, fps, max_frames, do_sample, temperature, seed, max_new_tokens,
                                  reading)
            items = [BatchItem(Path(path).name, path, text("prompt", prompt)) for path in paths]
        except UserInputError as exc:
            raise refusal("rank", exc) from None
        for results in records_so_far(score_many, items, options):
            yield [{"rank": standing.place, "tied": standing.tied, **results[standing.index].to_dict()}
                   for standing in standings(results, by)]

    return rank_videos


def batch_endpoint(score_many, defaults: ScoreOptions, max_batch: int):
    @cancellable
    def batch(videos: list[FileData], prompt: str = "", prompts_csv: str = "", template: str = defaults.template,
              fps: float = defaults.fps, max_frames: int = defaults.max_frames,
              do_sample: bool = defaults.do_sample, temperature: float = defaults.temperature, seed: int = 0,
              max_new_tokens: int = defaults.max_new_tokens,
              reading: str = defaults.reading) -> Iterator[tuple[str, list[dict]]]:
        """Score many videos (at most the app's max_batch): one prompt for all, or `prompts_csv` text with
        `video,prompt` rows, matched to the uploads by file name as the Batch tab matches them (`prompt`
        then serves the videos the CSV does not list). Streams the CSV table and the records so far as
        each video finishes, so a client keeps what was done if the batch is stopped; failed videos
        (and CSV rows naming no upload) carry their error. Videos scored before with the same settings
        come from the results store at once: a batch sent again after a failure resumes."""
        try:
            paths = video_paths(videos, 1, max_batch, "Batch")
            csv_text, default = text("prompts_csv", prompts_csv), text("prompt", prompt).strip()
            pairs = read_batch_csv(csv_text) if csv_text.strip() else None
            if pairs is None and not default:
                raise UserInputError("Give the prompt for all videos, or prompts_csv with each video's prompt.")
            options = options_for(defaults, template, fps, max_frames, do_sample, temperature, seed, max_new_tokens,
                                  reading)
            items = plan_batch(paths, pairs, default, most=max_batch)
        except UserInputError as exc:
            raise refusal("batch", exc) from None
        for results in records_so_far(score_many, items, options):
            yield results_to_csv(results), [r.to_dict() for r in results]

    return batch
