"""Command line: `python -m vs2demo score VIDEO... --prompt TEXT`.

Exit status of `score`: 0 when every video was scored, 1 when some failed (each failed record says
why), 2 on usage errors (bad flags, an empty prompt), checked before the model is loaded.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import DIMENSIONS
from .errors import ModelLoadError, UserInputError
from .prompts import TEMPLATES, clean_prompt
from .settings import DEVICES, QUANT_MODES, settings_from_env

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
SHORT_NAMES = {"visual_quality": "visual", "text_alignment": "alignment", "physical_consistency": "physical"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vs2demo", description="Score AI-generated videos with VideoScore2.")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="score videos against their generation prompt")
    score.add_argument("videos", nargs="+", metavar="VIDEO")
    score.add_argument("--prompt", required=True, help="the text the videos were generated from")
    add_model_flags(score)
    add_option_flags(score)
    score.add_argument("--json", action="store_true", help="print one JSON record per line instead of a table")

    return parser


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="hub id or local folder (default TIGER-Lab/VideoScore2; env VS2_MODEL)")
    parser.add_argument("--quant", choices=QUANT_MODES, help="weights: 4bit (default), 8bit or none (env VS2_QUANT)")
    parser.add_argument("--device", choices=DEVICES, help="auto (default: CUDA when present), cuda or cpu (env VS2_DEVICE)")


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, help="frames sampled per second of video (default 2.0)")
    parser.add_argument("--max-frames", type=int, help="at most this many frames (default 64; 768 = the reference cap)")
    parser.add_argument("--template", choices=TEMPLATES, help="prompt template: card (default) or eval (the paper's)")
    parser.add_argument("--sample", action="store_true", default=None, dest="do_sample",
                        help="sample instead of greedy decoding (scores then vary from run to run)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default 0.7)")
    parser.add_argument("--seed", type=int, help="seed for sampling")
    parser.add_argument("--max-new-tokens", type=int, help="most tokens the model may write (default 1024)")


def option_overrides(args) -> dict:
    names = ("model", "quant", "device", "fps", "max_frames", "template", "do_sample", "temperature", "seed", "max_new_tokens")
    return {name: getattr(args, name, None) for name in names}


class Progress:
    """Progress on stderr: a live line on a terminal, one line per step otherwise (logs, CI)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.live = stream.isatty()

    def say(self, message: str, live: bool = False) -> None:
        if live and not self.live:
            return
        if self.live:
            self.stream.write("\r\033[K" + message + ("" if live else "\n"))
        else:
            self.stream.write(message + "\n")
        self.stream.flush()


def command_score(args) -> int:
    from .backends.transformers import Engine  # heavy imports only for the commands that need them
    from .results import ScoreResult

    try:
        settings = settings_from_env(**option_overrides(args))
        prompt = clean_prompt(args.prompt)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress()
    progress.say(f"loading {settings.model} ({settings.quant}, device {settings.device})...")
    try:
        engine = Engine.load(settings)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    if engine.is_toy:
        progress.say("note: this is the toy model; its scores mean nothing, it exists for tests and previews.")
    progress.say(f"loaded in {engine.info.load_s:.1f} s on {engine.info.device}")

    results: list[ScoreResult] = []
    for number, video in enumerate(args.videos, start=1):
        label = f"[{number}/{len(args.videos)}] {video}"
        started = time.perf_counter()
        result = None
        try:
            for update in engine.score(video, prompt, settings.options):
                if isinstance(update, ScoreResult):
                    result = update
                elif update.stage == "generating" and update.new_tokens:
                    progress.say(f"{label}: {update.new_tokens} tokens", live=True)
                else:
                    progress.say(f"{label}: {update.stage}...", live=update.stage == "sampling")
        except UserInputError as exc:
            result = engine.failed(video, prompt, str(exc), settings.options)
        status = f"error: {result.error}" if result.error else f"overall {result.overall:.2f}" if result.overall is not None else "done"
        progress.say(f"{label}: {status} ({time.perf_counter() - started:.1f} s)")
        results.append(result)
        if args.json:
            print(result.to_json(), flush=True)
    if not args.json:
        print(format_table(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_SOME_FAILED


def format_table(results) -> str:
    """Scores as 'score (expected)' per dimension, one row per video, then errors in full."""
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
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header] + rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    errors = [f"{r.video}: {r.error}" for r in results if r.error]
    if errors:
        lines += ["", "errors:"] + [f"  {line}" for line in errors]
    return "\n".join(lines)



def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"score": command_score}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
