"""Scoring a list of rows (a video and its prompt each) into a resumable JSONL file: in this process,
or as a Ray Data job over as many workers as the machine or cluster has.

    rows (CSV) -> frame sampling, CPU tasks -> a pool of actors, each with the backend loaded once
    (`num_gpus` per actor: 0.5 packs two 4-bit models on one GPU) -> records, appended as they come

Both paths score through `scoring.Scorer.score` (the Ray one with frames sampled ahead by
`scoring.sample_video`, the call the Scorer itself makes), so the records are those of the CLI's
`score --out`: the same keys, so `--resume` and the Explore tab read either. A row that cannot be
scored is a failed record; a worker that dies is restarted by Ray and its row tried again; a job that
dies is finished by running it again with `--resume`.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Callable, Iterator

from .errors import UserInputError
from .results import BatchItem, ScoreResult, read_batch_csv
from .settings import Settings

# How often Ray restarts a dead actor, and tries a row again whose actor died. Ray Data's own default
# is without end, and a row that kills its worker each time (the GPU's memory) would never finish.
# Ray 2.60 takes these only as extra arguments, which it says are deprecated (for 2.64) while it has
# no named replacement for them: its warning is silenced where they are passed.
RESTARTS = {"max_restarts": 3, "max_task_retries": 3}


def read_rows(path: Path) -> list[BatchItem]:
    """The rows of a batch CSV (`video,prompt`, as the Batch tab reads it), each video's path taken
    from the CSV's own folder when it is not absolute; a row naming no file, or giving no prompt,
    is an item with its problem (a failed record, the rest goes on)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"Cannot read the rows file {path}: {exc.strerror or exc}.") from None
    items = []
    for video, prompt in read_batch_csv(text):
        file = Path(video).expanduser()
        file = file if file.is_absolute() else path.parent / file
        problem = None
        if not prompt.strip():
            problem = "No prompt for this video in the rows file."
        elif not file.is_file():
            problem = f"No such video file: {file}."
        items.append(BatchItem(video, str(file), prompt.strip(), problem))
    return items


def score_here(items: list[BatchItem], settings: Settings, done: dict[str, dict], store=None) -> Iterator[tuple[ScoreResult, bool]]:
    """(record, was it done already) for each row, in order, scored in this process."""
    from .scoring import Scorer

    scorer = Scorer(settings, store=store).start_loading(background=False)
    for item in items:
        if item.problem:
            yield scorer.failed(item.video, item.prompt, item.problem, settings.options), False
            continue
        if done:
            try:
                _, key = scorer.key_for(item.path, item.prompt, settings.options)
            except UserInputError:
                key = None
            if key in done:
                yield ScoreResult.from_dict(done[key]), True
                continue
        yield scorer.score_to_result(item.path, item.prompt, settings.options, name=item.video), False


# ---- Ray ------------------------------------------------------------------------------------------

def sample_row(row: dict, settings: Settings, min_pixels: int, max_pixels: int) -> dict:
    """The CPU stage: a row's frames, sampled as the model will want them (pickled: a row's columns
    are Arrow's), or the row's problem."""
    from .scoring import sample_video

    row["frames"] = b""
    if row["problem"] is None:
        try:
            row["frames"] = pickle.dumps(sample_video(row["path"], settings.options, min_pixels, max_pixels,
                                                      settings.total_pixels))
        except UserInputError as exc:  # the model is not asked about a file it cannot read
            row["problem"] = str(exc)
    return row


class ScoreRows:
    """The model stage: one actor holds one loaded backend and scores the rows it is given, each
    through `Scorer.score` with the frames sampled for it; a row whose record is in `done` (its key)
    is not scored again."""

    def __init__(self, settings: Settings, done_keys: frozenset[str]):
        from .scoring import Scorer

        self.settings = settings
        self.done_keys = done_keys
        self.scorer = Scorer(settings).start_loading(background=False)

    def __call__(self, row: dict) -> dict:
        options = self.settings.options
        if row["problem"] is not None:
            sha = key = None
            if Path(row["path"]).is_file():  # a file that is not a video: keyed, as the CLI keys it
                try:
                    sha, key = self.scorer.key_for(row["path"], row["prompt"], options)
                except UserInputError:
                    pass
            record = self.scorer.failed(row["video"], row["prompt"], row["problem"], options, sha, key)
            return {"position": row["position"], "record": record.to_json(), "done": False}
        if self.done_keys:
            try:
                _, key = self.scorer.key_for(row["path"], row["prompt"], options)
            except UserInputError:
                key = None
            if key in self.done_keys:
                return {"position": row["position"], "record": "", "done": True}
        record = self.scorer.score_to_result(row["path"], row["prompt"], options, name=row["video"],
                                             presampled=pickle.loads(row["frames"]) if row["frames"] else None)
        return {"position": row["position"], "record": record.to_json(), "done": False}


# CPUs a frame-sampling task takes. Half: with a whole one Ray fuses this stage into the model's actors,
# and the frames of the next rows would no longer be read while the model works on this one.
SAMPLER_CPUS = 0.5


def score_with_ray(items: list[BatchItem], settings: Settings, done: dict[str, dict], address: str | None = None,
                   workers: int = 1, gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0,
                   on_start: Callable[[str], None] | None = None) -> Iterator[tuple[ScoreResult | None, bool]]:
    """(record, was it done already) for each row as its actor finishes it (in no set order): Ray
    Data over a local cluster (`address` None: one is started on this machine) or the one at
    `address` ("auto" for the cluster this machine belongs to). A row done already gives (None, True)."""
    import ray
    from ray.data import ActorPoolStrategy

    from .backends import frame_budget

    min_pixels, max_pixels = frame_budget(settings)
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    resources = ray.cluster_resources()
    # Ray waits, without a word, for resources a cluster does not have: say so instead. The frames
    # are read beside the workers (SAMPLER_CPUS a task).
    if resources.get("CPU", 0) < workers * cpus_per_worker + SAMPLER_CPUS:
        raise UserInputError(f"{workers} workers of {cpus_per_worker:g} CPU each leave no CPU for reading frames on a "
                             f"cluster of {resources.get('CPU', 0):g} CPUs: ask fewer --workers or less --cpus-per-worker.")
    if resources.get("GPU", 0) < workers * gpus_per_worker:
        raise UserInputError(f"{workers} workers of {gpus_per_worker:g} GPU each need {workers * gpus_per_worker:g} GPUs; "
                             f"the cluster has {resources.get('GPU', 0):g}: ask fewer --workers or less --gpus-per-worker.")
    if on_start:
        on_start(f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; {workers} model "
                 f"worker{'s' if workers != 1 else ''} ({gpus_per_worker:g} GPU, {cpus_per_worker:g} CPU each)")
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = [{"position": i, "video": item.video, "path": item.path, "prompt": item.prompt, "problem": item.problem}
            for i, item in enumerate(items)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = (
            ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
            .map(sample_row, fn_kwargs={"settings": settings, "min_pixels": min_pixels, "max_pixels": max_pixels},
                 num_cpus=SAMPLER_CPUS)
            .map(ScoreRows, fn_constructor_args=(settings, frozenset(done)), compute=ActorPoolStrategy(size=workers),
                 num_gpus=gpus_per_worker or None, num_cpus=cpus_per_worker, **RESTARTS)
        )
    for row in dataset.iter_rows():
        if row["done"]:
            yield None, True
        else:
            yield ScoreResult.from_dict(json.loads(row["record"])), False
