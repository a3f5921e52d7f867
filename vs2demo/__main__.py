"""Command line: `python -m vs2demo score VIDEO... --prompt TEXT`, `export --out FILE`,
`metrics RESULTS --labels LABELS` (the paper's metrics against human labels), `compare-runs A B`,
`rank-generators RECORDS --by COLUMN --labels FILE`.

Exit status of `score`: 0 when every video was scored, 1 when some failed (each failed record says
why), 2 on usage errors (bad flags, an empty prompt), checked before the model is loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import DIMENSION_SHORT, DIMENSIONS
from .errors import UserInputError
from .prompts import TEMPLATES, clean_prompt
from .settings import (
    ATTENTION_LAYERS, BACKENDS, DEFAULT_FPS, DEFAULT_MAX_FRAMES, DEVICES, PRESETS, QUANT_MODES, READINGS, settings_from_env,
)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
SHORT_NAMES = {key: short.lower() for key, short in DIMENSION_SHORT.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vs2demo", description="Score AI-generated videos with VideoScore2.")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="score videos against their generation prompt")
    score.add_argument("videos", nargs="+", metavar="VIDEO")
    score.add_argument("--prompt", required=True, help="the text the videos were generated from")
    add_model_flags(score)
    add_option_flags(score)
    score.add_argument("--json", action="store_true", help="print one JSON record per line instead of a table")
    score.add_argument("--out", metavar="FILE.jsonl", help="append each record to this file as it finishes")
    score.add_argument("--resume", action="store_true", help="skip the videos already recorded in --out (same video, "
                       "prompt, model and settings; a failed one too)")
    add_retry_flag(score)
    add_store_flags(score)
    score.add_argument("--rescore", action="store_true", help="score again even when the store has the record")
    score.add_argument("--attention", action="store_true", default=None, help="where it looked: each score's "
                       "attention over the frames (per pair of frames) and the prompt's words, kept in the record and "
                       "summed up under the table (transformers backend only)")
    score.add_argument("--attention-layers", choices=ATTENTION_LAYERS, help="with --attention: average the attention "
                       "of all layers (default) or of the later half (env VS2_ATTENTION_LAYERS)")

    batch = commands.add_parser("batch", help="score the rows of a CSV (video,prompt) into a resumable JSONL file, "
                                "in this process or as a Ray job over several workers")
    batch.add_argument("rows", metavar="ROWS.csv", help="video,prompt rows (a header is optional); relative video "
                       "paths are read from the CSV's folder")
    batch.add_argument("--out", required=True, metavar="FILE.jsonl", help="append each record to this file as it finishes")
    batch.add_argument("--resume", action="store_true", help="skip the rows already recorded in --out (a failed one too)")
    add_retry_flag(batch)
    batch.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="run as a Ray Data job: on a "
                       "cluster started on this machine, or the one at ADDRESS ('auto': the one this machine is in)")
    batch.add_argument("--workers", type=int, default=1, help="with --ray: model workers, each loading the model once")
    batch.add_argument("--gpus-per-worker", type=float, help="with --ray: GPUs a worker takes (default 1 where "
                       "the cluster has GPUs, else 0, and 0 with --backend vllm; 0.5 packs two 4-bit models on one GPU)")
    batch.add_argument("--cpus-per-worker", type=float, help="with --ray: CPUs a worker takes (default 1; 0.5 with "
                       "--backend vllm)")
    add_model_flags(batch)
    add_option_flags(batch)
    add_store_flags(batch)

    export = commands.add_parser("export", help="write the records of a results store to a .jsonl or .csv file")
    export.add_argument("--store", help="the store file (default: VS2_STORE, else the user's cache folder)")
    export.add_argument("--out", required=True, metavar="FILE.jsonl|FILE.csv")

    export_labels = commands.add_parser("export-labels", help="write the labels people gave in the app (a results "
                                        "store's) as the labels CSV `metrics --labels` reads")
    export_labels.add_argument("--store", help="the store file (default: VS2_STORE, else the user's cache folder)")
    export_labels.add_argument("out", metavar="OUT.csv", help="video,prompt,visual_quality,text_alignment,"
                               "physical_consistency,who")
    export_labels.add_argument("--pairs", metavar="PAIRS.csv", help="also the A/B/tie preferences: "
                               "video_a,video_b,prompt,preference,who (the pairs CSV `metrics --pairs` reads)")

    metrics = commands.add_parser("metrics", help="measure records against human labels as the VideoScore2 paper does")
    metrics.add_argument("results", metavar="RESULTS", help="records: .jsonl (--out, export), .json or .csv (Batch)")
    metrics.add_argument("--labels", metavar="LABELS", help="human labels: CSV video,visual_quality,text_alignment,"
                         "physical_consistency, or the VideoFeedback2 / VideoScore-Bench-v2 JSON")
    metrics.add_argument("--score", choices=("int", "expected", "normed"), default="expected",
                         help="the model score the metrics use (default expected; normed is the authors' soft score)")
    metrics.add_argument("--pairs", metavar="PAIRS", help="preference pairs: CSV video_a,video_b,preference (a, b or tie)")
    metrics.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    metrics.add_argument("--full", action="store_true", help="with --json: also the confusion matrices and the "
                         "reliability bins")

    add_runs_commands(commands)
    return parser


def add_runs_commands(commands) -> None:
    """compare-runs and rank-generators (vs2demo.runs, vs2demo.generators)."""
    runs = commands.add_parser("compare-runs", help="two runs over the same videos side by side: agreement, "
                               "kappa, B - A with its 95%% interval, where they disagree most")
    runs.add_argument("run_a", metavar="A.jsonl", help="records of run A (.jsonl, .json or .csv)")
    runs.add_argument("run_b", metavar="B.jsonl", help="records of run B")
    runs.add_argument("--json", action="store_true", help="print one JSON object (what the Explore tab shows)")
    runs.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    ranked = commands.add_parser("rank-generators", help="rank the generators named by a column per dimension, "
                                 "with 95%% intervals and pairwise win rates on shared prompts")
    ranked.add_argument("records", nargs="+", metavar="RECORDS", help="records of one run")
    ranked.add_argument("--by", required=True, metavar="COLUMN", help="the column naming each video's generator")
    ranked.add_argument("--labels", required=True, metavar="FILE", help="a CSV video,COLUMN (people's scores "
                        "optional) or a labels file carrying COLUMN")
    ranked.add_argument("--scores", choices=("model", "people"), default="model",
                        help="rank by the model's expected scores (default) or people's labels in --labels")
    ranked.add_argument("--json", action="store_true", help="print one JSON object (what the Explore tab shows)")
    ranked.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="hub id or local folder (default TIGER-Lab/VideoScore2; env VS2_MODEL)")
    parser.add_argument("--quant", choices=QUANT_MODES, help="weights: 4bit (default), 8bit or none (env VS2_QUANT)")
    parser.add_argument("--device", choices=DEVICES, help="auto (default: CUDA when present), cuda or cpu (env VS2_DEVICE)")
    parser.add_argument("--backend", choices=BACKENDS, help="transformers (default: the model in this process) or vllm "
                        "(a vLLM server does the generating; env VS2_BACKEND)")
    parser.add_argument("--vllm-url", metavar="URL", help="with --backend vllm: the server, e.g. http://127.0.0.1:8000 "
                        "(env VS2_VLLM_URL)")
    parser.add_argument("--vllm-label", metavar="NAME", help="with --backend vllm: a name for how the server runs the "
                        "model (weights, quantization, dtype), kept in each record and its key, so that records of "
                        "differently served models stay apart (env VS2_VLLM_LABEL)")


def add_retry_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retry-failed", action="store_true", help="with --resume: take the failed records out of "
                        "--out and score their videos again")


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="results store file (default: VS2_STORE, else ~/.cache/vs2demo/results.sqlite3)")
    parser.add_argument("--no-store", action="store_true", help="keep no records, serve none")


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, help=f"frames sampled per second of video (default {DEFAULT_FPS})")
    parser.add_argument("--max-frames", type=int, help=f"at most this many frames (default {DEFAULT_MAX_FRAMES}; 768 = the reference cap)")
    parser.add_argument("--template", choices=TEMPLATES, help="prompt template: card (the model card's, default), eval "
                        "(the paper's evaluation prompt) or inference (the card's as vs2_inference.py sends it)")
    parser.add_argument("--sample", action="store_true", default=None, dest="do_sample",
                        help="sample instead of greedy decoding (scores then vary from run to run)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default 0.7)")
    parser.add_argument("--seed", type=int, help="seed for sampling")
    parser.add_argument("--max-new-tokens", type=int, help="most tokens the model may write (default 1024)")
    parser.add_argument("--reading", choices=READINGS, help="where scores and p(1..5) are read: answer (default: the "
                        "answer block, before temperature) or authors (as vs2_inference.py: its regex, after temperature)")
    parser.add_argument("--samples", type=int, metavar="K", help="ask K times (2-16): K sampled answers sharing one "
                        "prefill (implies --sample), their combined scores and how far they agree")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="authors: the authors' public inference (the template "
                        "as their script writes it, sampling at 0.7, up to 768 frames, their reading); flags given win")


def option_overrides(args) -> dict:
    names = ("model", "quant", "device", "backend", "vllm_url", "vllm_label", "fps", "max_frames", "template", "do_sample",
             "temperature", "seed", "max_new_tokens", "reading", "samples", "attention", "attention_layers")
    given = {name: getattr(args, name, None) for name in names}
    if (given["samples"] or 1) > 1 and given["do_sample"] is None:
        given["do_sample"] = True  # K answers to compare are K samples
    preset = PRESETS.get(getattr(args, "preset", None) or "", {})
    return {**given, **{name: value for name, value in preset.items() if given.get(name) is None}}


def loading_message(settings) -> str:
    if settings.backend == "vllm":
        return f"connecting to the vLLM server at {settings.vllm_url} ({settings.model})..."
    return f"loading {settings.model} ({settings.quant}, device {settings.device})..."


class Progress:
    """Progress on stderr: a live line on a terminal, one line per step otherwise (logs, CI)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr  # looked up now: a caller may have replaced it
        self.live = self.stream.isatty()

    def say(self, message: str, live: bool = False) -> None:
        if live and not self.live:
            return
        if self.live:
            self.stream.write("\r\033[K" + message + ("" if live else "\n"))
        else:
            self.stream.write(message + "\n")
        self.stream.flush()


def open_out(args, say):
    """The --out file (None when not asked for), opened to resume with --resume: checked and
    repaired before any work (`records_io.JsonlRecords`); what opening it did is said."""
    from .records_io import JsonlRecords

    if args.resume and not args.out:
        raise UserInputError("--resume needs --out FILE.jsonl: the file whose videos are done.")
    if args.retry_failed and not args.resume:
        raise UserInputError("--retry-failed goes with --resume: it scores again the failed videos of --out.")
    if not args.out:
        return None
    out = JsonlRecords(args.out, resume=args.resume, retry_failed=args.retry_failed)
    for note in out.notes:
        say(note)
    return out


def watched(store, say):
    """The store for a CLI run: what it cannot do is said, the run goes on (`batch.WatchedStore`)."""
    from .batch import WatchedStore

    return WatchedStore(store, say) if store is not None else None


def write_failed(out, exc: OSError) -> int:
    print(f"error: cannot write records to {out.path} any more ({exc.strerror or exc}). The records written so far "
          "are kept: free some space and run again with --resume.", file=sys.stderr)
    return EXIT_SOME_FAILED


def loaded_message(info, store) -> str:
    message = f"loaded in {info.load_s:.1f} s on {info.device}" + (f"; results store {store.path}" if store is not None else "")
    if info.backend == "vllm" and not info.served_as:
        message += ("\nnote: how the vLLM server runs the model (its weights' revision, quantization, dtype) cannot be "
                    "read from here: name it with --vllm-label, or records of two differently served models share keys.")
    return message


def command_score(args) -> int:
    from .store import open_store

    progress = Progress()
    settings = settings_from_env(**option_overrides(args))
    prompt = clean_prompt(args.prompt, template=settings.options.template)
    if settings.options.attention and settings.backend == "vllm":
        from .backends.vllm import ATTENTION_REFUSAL

        raise UserInputError(ATTENTION_REFUSAL)
    store = open_store(args.store, enabled=not args.no_store)
    out = open_out(args, progress.say)
    try:
        results = score_videos(args, settings, prompt, store, out, progress)
    except OSError as exc:  # writing --out: the disk filled up since it was checked
        return write_failed(out, exc)
    finally:
        if out is not None:
            out.close()
    if results is None:
        return EXIT_SOME_FAILED
    if not args.json:
        print(format_table(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_SOME_FAILED


def score_videos(args, settings, prompt: str, store, out, progress: Progress) -> list | None:
    """`score`'s videos in order, each recorded in --out as it finishes (or found there already, with
    --resume); None when the model could not be loaded (said)."""
    from .batch import BatchItem, score_rows
    from .scoring import Scorer, display_name

    progress.say(loading_message(settings))
    scorer = Scorer(settings, store=watched(store, progress.say)).start_loading(background=False)
    if scorer.state == "failed":
        print(f"error: {scorer.error}", file=sys.stderr)
        return None
    if scorer.info.is_toy:
        progress.say("note: this is the toy model; its scores mean nothing, it exists for tests and previews.")
    progress.say(loaded_message(scorer.info, store))
    results = []
    items = [BatchItem(display_name(video), video, prompt) for video in args.videos]
    rows = score_rows(scorer, items, settings.options, out, refresh=args.rescore)
    for number, (item, found, updates) in enumerate(rows, start=1):
        label = f"[{number}/{len(items)}] {item.path}"
        if found is not None:
            result = found
            progress.say(f"{label}: done already (in {out.path}), skipped")
        else:
            result = said_progress(updates, label, progress)
            if out is not None:
                out.put(result)
        results.append(result)
        if args.json:
            print(result.to_json(), flush=True)
    return results


def said_progress(updates, label: str, progress: Progress):
    """One video's record, from its scoring's updates, its progress said as they come."""
    from .results import ScoreResult

    started = time.perf_counter()
    for update in updates:
        if isinstance(update, ScoreResult):
            result = update
        elif update.stage == "generating" and update.new_tokens:
            progress.say(f"{label}: {update.new_tokens} tokens", live=True)
        else:
            progress.say(f"{label}: {update.stage}...", live=update.stage == "sampled")
    stored = " (from the results store)" if result.stored else ""
    progress.say(f"{label}: {outcome(result)}{stored} ({time.perf_counter() - started:.1f} s)")
    return result


def outcome(result) -> str:
    """How a finished video went, as a progress line says it."""
    return f"error: {result.error}" if result.error else f"overall {result.overall:.2f}" if result.overall is not None else "done"


def command_batch(args) -> int:
    from .batch import read_rows, score_here, score_with_ray
    from .metrics import counted
    from .store import open_store

    progress = Progress()
    settings = settings_from_env(**option_overrides(args))
    items = read_rows(Path(args.rows))
    if not items:
        raise UserInputError(f"{args.rows} has no rows: write one video,prompt line per video.")
    if args.workers < 1:
        raise UserInputError("--workers must be at least 1.")
    store = open_store(args.store, enabled=not args.no_store)
    out = open_out(args, progress.say)
    total, finished, failed, skipped = len(items), 0, 0, 0
    started = time.perf_counter()
    if args.ray:
        stream = score_with_ray(items, settings, out, address=None if args.ray == "local" else args.ray,
                                **ray_resources(args, settings), store_path=str(store.path) if store is not None else None,
                                on_start=progress.say, on_note=progress.say)
    else:
        progress.say(loading_message(settings))
        stream = score_here(items, settings, out, store=watched(store, progress.say))
    try:
        for result, was_done in stream:
            finished += 1
            if was_done:
                skipped += 1
                progress.say(f"[{finished}/{total}] done already (in {out.path}), skipped")
                continue
            out.put(result)
            failed += not result.ok
            progress.say(f"[{finished}/{total}] {result.video}: {outcome(result)}")
    except OSError as exc:
        return write_failed(out, exc)
    finally:
        out.close()
    progress.say(f"{counted(total, 'row')} in {time.perf_counter() - started:.1f} s: {total - failed - skipped} scored, "
                 f"{skipped} done already, {failed} failed; records in {out.path}")
    return EXIT_OK if failed == 0 else EXIT_SOME_FAILED


def ray_resources(args, settings) -> dict:
    """The workers' share of the cluster: the flags given, else one GPU a worker where the cluster
    has GPUs and the model runs in the worker."""
    gpus = args.gpus_per_worker
    if gpus is None:
        import torch

        # A vLLM worker is an HTTP client: the server holds the GPU.
        gpus = 1.0 if torch.cuda.is_available() and settings.backend != "vllm" else 0.0
    cpus = args.cpus_per_worker
    if cpus is None:
        cpus = 0.5 if settings.backend == "vllm" else 1.0  # a vLLM worker only waits on the server
    return {"workers": args.workers, "gpus_per_worker": gpus, "cpus_per_worker": cpus}


def command_export(args) -> int:
    from .metrics import counted
    from .records_io import open_to_write, records_to_jsonl, results_to_csv
    from .store import ResultStore, store_path

    path = store_path(args.store)
    if path is None:
        raise UserInputError("the results store is turned off (VS2_STORE=off): give --store FILE.")
    if not path.is_file():
        raise UserInputError(f"no results store at {path}: give --store FILE (or VS2_STORE).")
    out = Path(args.out)
    if out.suffix.lower() not in (".jsonl", ".csv"):
        raise UserInputError("--out must end in .jsonl (one JSON record a line) or .csv (a table).")
    existed = out.exists()
    store = ResultStore(path)
    handle = open_to_write(out, "ab")  # checked before the store is read; emptied once it has been
    with handle:
        try:
            records = list(store.records())
        except Exception as exc:  # a damaged store: said, not a traceback
            if not existed:
                out.unlink()
            print(f"error: the results store {path} cannot be read ({type(exc).__name__}: {exc}); it is damaged. "
                  f"Nothing was written to {out}.", file=sys.stderr)
            return EXIT_SOME_FAILED
        try:
            handle.truncate(0)
            if out.suffix.lower() == ".csv":
                handle.write(results_to_csv(records).encode("utf-8"))
            else:
                handle.write(records_to_jsonl(records).encode("utf-8"))
        except OSError as exc:
            print(f"error: cannot write {out} ({exc.strerror or exc}).", file=sys.stderr)
            return EXIT_SOME_FAILED
    print(f"{counted(len(records), 'record')} from {path} written to {out}", file=sys.stderr)
    return EXIT_OK


def format_table(results) -> str:
    """Scores as 'score (expected)' per dimension, one row per video, then how K samples agreed,
    then errors in full."""
    from .metrics import aligned
    from .self_consistency import summary_sentence

    header = ["video"] + [SHORT_NAMES[key] for key in DIMENSIONS] + ["overall"]
    rows = []
    for result in results:
        cells = [result.video]
        for key in DIMENSIONS:
            dim = result.scores[key]
            if dim.score is None:
                cells.append("-")
            elif dim.expected is not None and dim.probs is not None:
                cells.append(f"{dim.score} ({dim.expected:.2f})")
            else:
                cells.append(str(dim.score))
        cells.append("-" if result.overall is None else f"{result.overall:.2f}")
        rows.append(cells)
    lines = aligned([header] + rows, rule=True)
    asked_again = [f"{r.video}: {summary_sentence(r.samples)}" for r in results if r.samples]
    if asked_again:
        lines += ["", "agreement:"] + [f"  {line}" for line in asked_again]
    looked = [r for r in results if r.attention]
    if looked:
        from .attention import summary_lines

        for r in looked:
            lines += ["", f"{r.video}:"] + summary_lines(r.attention, r.frames.get("timestamps") or [], SHORT_NAMES)
    errors = [f"{r.video}: {r.error}" for r in results if r.error]
    if errors:
        lines += ["", "errors:"] + [f"  {line}" for line in errors]
    return "\n".join(lines)



def command_metrics(args) -> int:
    from . import metrics
    from .records_io import read_records

    if not args.labels and not args.pairs:
        raise UserInputError("give --labels (human scores) or --pairs (human preferences) to measure against.")
    records = read_records(args.results)
    labels = metrics.read_labels(args.labels) if args.labels else []
    pairs = metrics.read_pairs(args.pairs) if args.pairs else None
    report = metrics.compute(records, labels, args.score, pairs)
    if args.json:
        print(json.dumps(metrics.json_report(report, full=args.full), ensure_ascii=False))
    else:
        print(metrics.format_report(report))
    return EXIT_OK


def command_compare_runs(args) -> int:
    from . import runs

    report = runs.compare_files(args.run_a, args.run_b, seed=args.seed)
    print(json.dumps(report, ensure_ascii=False) if args.json else runs.format_comparison(report))
    return EXIT_OK


def command_rank_generators(args) -> int:
    from . import generators

    report = generators.rank_files(args.records, args.labels, args.by, args.scores, seed=args.seed)
    print(json.dumps(report, ensure_ascii=False) if args.json else generators.format_ranking(report))
    return EXIT_OK


def command_export_labels(args) -> int:
    from .labels import export_labels
    from .store import store_path

    path = store_path(args.store)
    if path is None or not path.is_file():
        raise UserInputError(f"no results store at {path or '(turned off)'}: give --store FILE (or VS2_STORE).")
    print(export_labels(path, Path(args.out), Path(args.pairs) if args.pairs else None))
    return EXIT_OK


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"score": command_score, "batch": command_batch, "export": command_export, "metrics": command_metrics,
                "compare-runs": command_compare_runs, "rank-generators": command_rank_generators,
                "export-labels": command_export_labels}
    try:
        return commands[args.command](args)
    except UserInputError as exc:  # bad input of any command (flags, files, a Ray cluster too small): said, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def cli() -> None:
    """The `vs2demo` command (pyproject's script): the same as `python -m vs2demo`."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
