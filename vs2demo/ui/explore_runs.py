"""Explore, continued: two runs of the loaded set side by side (`vs2demo.runs`), and the generators
named by a column ranked (`vs2demo.generators`). Each works on a press of its button, so the
filters of the table above stay as quick as they were; the figures are the very dict the CLI's
`--json` prints (`compare-runs`, `rank-generators`), rendered.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from .. import DIMENSIONS
from ..errors import UserInputError
from ..explore import MAX_RECORDS, Collection, select
from ..generators import (
    PAIR_HEADERS, RANKING_HEADERS, SOURCES, judged_videos, pair_rows, rank_generators, ranking_rows, summary_sentence,
)
from ..metrics import read_labels, video_key
from ..plots import SHORT_LABELS, confusion_figure, generators_figure
from ..runs import DIMENSION_HEADERS, compare_runs, dimension_rows, pairing_sentence, scores_text
from . import explore as explore_tab  # a module reference: explore imports this module while it loads
from . import files
from .render import record_reasoning, score_cards, status_html

DISAGREEMENT_HEADERS = ["#", "Video", "Prompt", "Gap", "A (V/A/P)", "B (V/A/P)"]
PICK_A_ROW = "<p class='vs2-status'>Click a row above to read both rationales side by side, with the video.</p>"
MAX_SEED = 2**32 - 1


def seed_of(value) -> int:
    """The bootstrap's seed from the page's box: a whole number 0..2³²-1 (empty: 0)."""
    if value is None or value == "":
        return 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number.is_integer() or not 0 <= number <= MAX_SEED:
        raise UserInputError(f"The seed must be a whole number from 0 to {MAX_SEED:,}, not {value!r}.")
    return int(number)


def run_records(current: Collection, name: str) -> tuple[list, list[int]]:
    """A run's records, in the order they were read, and their numbers in the set."""
    numbers = [int(n) for n in current.frame.loc[current.frame["run"] == name, "#"]] if len(current.frame) else []
    return [current.records[n] for n in numbers], numbers


# ---- two runs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunsView:
    """A comparison: the report (compare_runs' dict), the note, the per-dimension table, the
    confusion figure, the disagreements and, per disagreement row, the records' numbers in the set."""

    report: dict | None
    note: str
    table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame([], columns=DIMENSION_HEADERS))
    confusion: object | None = None
    disagreements: pd.DataFrame = field(default_factory=lambda: pd.DataFrame([], columns=DISAGREEMENT_HEADERS))
    opened: tuple = ()


def runs_view(current: Collection, name_a: str, name_b: str, seed) -> RunsView:
    """Run A against run B of the loaded set; UserInputError says why not."""
    if not name_a or not name_b:
        raise UserInputError("Choose two runs (A and B) to compare.")
    if name_a == name_b:
        raise UserInputError("Choose two different runs: A and B are the same.")
    a, a_numbers = run_records(current, name_a)
    b, b_numbers = run_records(current, name_b)
    if not a or not b:
        raise UserInputError("One of the runs holds no record of this set: choose again.")
    report = compare_runs(a, b, (name_a, name_b), seed=seed_of(seed))
    if not report["paired"]:
        return RunsView(report, status_html("failed", "These two runs share no video with the same prompt: nothing to "
                                                      "compare. " + pairing_sentence(report)))
    rows = dimension_rows(report, SHORT_LABELS)
    shown = report["disagreements"]
    return RunsView(
        report, runs_note(report), pd.DataFrame(rows, columns=DIMENSION_HEADERS),
        confusion_figure(report, rows="A", columns="B", title="A (rows) against B (columns)"),
        pd.DataFrame([[str(n), item["video"], item["prompt"][:90], f"{item['gap']:.2f}", scores_text(item["a"]),
                       scores_text(item["b"])] for n, item in enumerate(shown, start=1)], columns=DISAGREEMENT_HEADERS),
        tuple((a_numbers[item["a_record"]], b_numbers[item["b_record"]]) for item in shown))


def runs_note(report: dict) -> str:
    return ("<div class='vs2-verdict'>"
            f"<div><b>A</b>: {html.escape(report['a']['name'])}</div>"
            f"<div><b>B</b>: {html.escape(report['b']['name'])}</div>"
            f"<p>{html.escape(pairing_sentence(report))} Agreement on the integer scores, with Cohen's kappa with "
            "<b>quadratic</b> weights over the scores 1-5; B − A on the expected scores, with a percentile bootstrap "
            f"95% interval over the paired videos (seed {report['seed']}, {report['resamples']:,} resamples). Below: "
            "the videos where they differ most (the sum over the dimensions of |B − A| in expected score).</p></div>")


def side_html(side: str, name: str, record) -> str:
    """One run's judgement of the opened video: its name, cards and rationale."""
    return (f"<div class='vs2-row-head'><b>{side}</b> · {html.escape(name)}</div>"
            + score_cards(record.scores, record.overall, final=True) + record_reasoning(record))


def disagreement_detail(ctx, current: Collection | None, opened, row, videos_by_name: dict, names) -> dict | None:
    """The opened disagreement: the video and both judgements; None: no such row."""
    try:
        a_number, b_number = opened[int(row[0]) - 1]
    except (TypeError, ValueError, IndexError):
        return None
    if current is None or not 0 <= max(a_number, b_number) < len(current.records):
        return None
    a, b = current.record(a_number), current.record(b_number)
    path = explore_tab.video_for(ctx, a, videos_by_name)
    label = a.video if path else "The video's file is not at hand: upload it above, or start the app with --videos FOLDER"
    return {"runs_video": gr.update(value=path, label=label), "runs_a": side_html("A", names[0], a),
            "runs_b": side_html("B", names[1], b)}


# ---- generators ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GeneratorsView:
    report: dict | None
    note: str
    figure: object | None = None
    ranking: pd.DataFrame = field(default_factory=lambda: pd.DataFrame([], columns=["Dimension", *RANKING_HEADERS]))
    pairs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame([], columns=["Dimension", *PAIR_HEADERS]))


def read_groups(path) -> dict:
    """A `video,generator` file (people's scores optional), by video_key."""
    labels = read_labels(files.uploaded_path(path), limit=MAX_RECORDS, scores_required=False)
    return {video_key(label.video): label for label in labels}


def generators_view(current: Collection, rows: pd.DataFrame, column: str, source: str, seed,
                    groups_path=None) -> GeneratorsView:
    """The generators of the rows shown, by `column` of the groups file (else the labels file)."""
    if not column:
        raise UserInputError("Choose the column that names each video's generator (a column of the labels file, "
                             "or of a video,generator file uploaded here).")
    groups = read_groups(groups_path) if groups_path else current.labels
    records = [current.records[n] for n in rows["#"]] if len(rows) else []
    videos, left_out = judged_videos(records, groups, column, source or "model", people=current.labels or groups)
    report = rank_generators(videos, column, source or "model", left_out, seed=seed_of(seed))
    ranking = [[SHORT_LABELS[key], *cells] for key in DIMENSIONS for cells in ranking_rows(report["dimensions"][key])]
    pairs = [[SHORT_LABELS[key], *cells] for key in DIMENSIONS for cells in pair_rows(report["dimensions"][key])]
    note = ("<div class='vs2-verdict'>" + html.escape(summary_sentence(report)) + " Each mean with a percentile "
            f"bootstrap 95% interval over the generator's videos (seed {report['seed']}, {report['resamples']:,} "
            "resamples). <b>Generators sharing a letter are not told apart at this size</b>: the interval of their mean "
            "difference on the prompts both made videos for holds 0, or they share fewer than "
            f"{report['min_shared_prompts']} prompts. A wins %: on shared prompts, how often A's videos scored higher "
            "(a tie counts half).</div>")
    return GeneratorsView(report, note, generators_figure(report), pd.DataFrame(ranking, columns=["Dimension", *RANKING_HEADERS]),
                          pd.DataFrame(pairs, columns=["Dimension", *PAIR_HEADERS]))


def column_choices(current: Collection | None, groups_path=None) -> list[str]:
    """The columns a generator may be named by: the labels file's others, and the groups file's."""
    columns = list(current.label_columns) if current is not None else []
    if groups_path:
        try:
            columns += [c for label in read_groups(groups_path).values() for c in label.extra if c not in columns]
        except UserInputError:
            pass  # said when Rank is pressed
    return list(dict.fromkeys(columns))


# ---- what each output shows, by name --------------------------------------------------------------------

RUNS_OUT = ("runs_note", "runs_table", "runs_confusion", "runs_disagreements", "runs_opened", "runs_names",
            "runs_video", "runs_a", "runs_b")
OPEN_OUT = ("runs_video", "runs_a", "runs_b")
GEN_OUT = ("gen_note", "gen_plot", "gen_ranking", "gen_pairs")
RESET_OUT = ("run_a", "run_b", "gen_by", *RUNS_OUT, *GEN_OUT)


def runs_shown(view: RunsView) -> dict:
    report = view.report or {}
    names = (report["a"]["name"], report["b"]["name"]) if report else ("", "")
    return {"runs_note": view.note, "runs_table": view.table,
            "runs_confusion": gr.update(value=view.confusion, visible=view.confusion is not None),
            "runs_disagreements": view.disagreements, "runs_opened": list(view.opened), "runs_names": names,
            "runs_video": gr.update(value=None, label="The video"), "runs_a": PICK_A_ROW if view.opened else "",
            "runs_b": ""}


def generators_shown(view: GeneratorsView) -> dict:
    return {"gen_note": view.note, "gen_plot": gr.update(value=view.figure, visible=view.figure is not None),
            "gen_ranking": view.ranking, "gen_pairs": view.pairs}


def reset_shown(current: Collection | None) -> dict:
    """A new set: its runs and columns to choose from; the last set's comparison and ranking go."""
    runs = sorted(current.frame["run"].unique()) if current is not None and len(current.records) else []
    columns = column_choices(current)
    by = "generator" if "generator" in columns else (columns[0] if columns else None)
    return {"run_a": gr.update(choices=runs, value=runs[0] if runs else None),
            "run_b": gr.update(choices=runs, value=runs[1] if len(runs) > 1 else None),
            "gen_by": gr.update(choices=columns, value=by),
            **runs_shown(RunsView(None, "" if len(runs) > 1 else
                                  "<p class='vs2-status'>Load records of two runs (two files, or one file of two) "
                                  "to compare them.</p>")),
            **generators_shown(GeneratorsView(None, ""))}


# ---- layout and wiring -----------------------------------------------------------------------------------

def build(ui: dict, ctx) -> None:
    """Adds both panels under Explore's (`ui`: Explore's components by name) and wires them."""
    ui.update(runs_area(), **generators_area())
    wire(ui, ctx)


def runs_area() -> dict:
    with gr.Accordion("Two runs side by side", open=False, elem_id="explore-runs"):
        with gr.Row(equal_height=False):
            run_a = gr.Dropdown([], label="Run A", elem_id="explore-run-a", scale=3)
            run_b = gr.Dropdown([], label="Run B", elem_id="explore-run-b", scale=3)
            seed = gr.Number(0, precision=0, minimum=0, label="Bootstrap seed", elem_id="explore-runs-seed", scale=1,
                             min_width=120)
        compare = gr.Button("Compare the two runs", variant="primary", elem_id="explore-compare-runs")
        note = gr.HTML("", elem_id="explore-runs-note")
        with gr.Column(elem_classes="vs2-wide-table"):
            table = gr.Dataframe(headers=DIMENSION_HEADERS, interactive=False, elem_id="explore-runs-table",
                                 elem_classes=["vs2-readonly-table"])
        confusion = gr.Plot(label="Confusion of the integer scores", visible=False, elem_id="explore-runs-confusion")
        with gr.Column(elem_classes="vs2-wide-table"):
            disagreements = gr.Dataframe(headers=DISAGREEMENT_HEADERS, label="Where they disagree most", interactive=False,
                                         wrap=True, max_height=360, elem_id="explore-runs-disagreements",
                                         column_widths=["5%", "20%", "35%", "10%", "15%", "15%"],
                                         elem_classes=["vs2-readonly-table", "vs2-opens-rows"])
        video = gr.Video(label="The video", interactive=False, height=220, elem_id="explore-runs-video")
        with gr.Row(equal_height=False):  # side by side on a laptop, one under the other on a phone
            with gr.Column(min_width=340):
                side_a = gr.HTML("", elem_id="explore-runs-a", min_height=0)
            with gr.Column(min_width=340):
                side_b = gr.HTML("", elem_id="explore-runs-b", min_height=0)
    return {"run_a": run_a, "run_b": run_b, "runs_seed": seed, "compare_runs": compare, "runs_note": note,
            "runs_table": table, "runs_confusion": confusion, "runs_disagreements": disagreements, "runs_video": video,
            "runs_a": side_a, "runs_b": side_b, "runs_opened": gr.State([]), "runs_names": gr.State(("", ""))}


def generators_area() -> dict:
    with gr.Accordion("Rank generators", open=False, elem_id="explore-generators"):
        gr.Markdown("The rows shown above, grouped by a column naming each video's generator: the labels file's "
                    "other columns, or a `video,generator` file here (people's scores in it optional).")
        with gr.Row(equal_height=False):
            groups = gr.File(label="Generators (optional: video,generator)", file_count="single", height=110,
                             file_types=[".csv", ".json", ".jsonl"], elem_id="explore-groups")
            with gr.Column():
                by = gr.Dropdown([], label="Generator column", allow_custom_value=True, elem_id="explore-generator-by")
                source = gr.Radio([(words[0].upper() + words[1:], key) for key, words in SOURCES.items()], value="model",
                                  label="Rank by", elem_id="explore-generator-source")
                seed = gr.Number(0, precision=0, minimum=0, label="Bootstrap seed", elem_id="explore-generators-seed")
        rank = gr.Button("Rank the generators", variant="primary", elem_id="explore-rank-generators")
        note = gr.HTML("", elem_id="explore-generators-note")
        plot = gr.Plot(label="Generators", visible=False, elem_id="explore-generators-plot")
        with gr.Column(elem_classes="vs2-wide-table"):  # scrolls sideways on a phone (style.css)
            ranking = gr.Dataframe(headers=["Dimension", *RANKING_HEADERS], interactive=False, label="Ranking",
                                   elem_id="explore-generators-ranking", elem_classes=["vs2-readonly-table"])
            pairs = gr.Dataframe(headers=["Dimension", *PAIR_HEADERS], interactive=False, label="Pairs, on shared prompts",
                                 wrap=True, elem_id="explore-generators-pairs", elem_classes=["vs2-readonly-table"])
    return {"gen_groups": groups, "gen_by": by, "gen_source": source, "gen_seed": seed, "rank_generators": rank,
            "gen_note": note, "gen_plot": plot, "gen_ranking": ranking, "gen_pairs": pairs}


def wire(ui: dict, ctx) -> None:
    ordered, private = explore_tab.ordered, {"api_visibility": "private"}

    def components(names) -> list:
        return [ui[name] for name in names]

    def reset(handle):
        return ordered(RESET_OUT, reset_shown(ctx.sets.get(handle)))

    # Named apart from the API's endpoints: Gradio names a private event after its function too, and
    # the first "compare" or "rank" would push the public /compare and /rank to /compare_1 and /rank_1.
    def compared_runs(handle, name_a, name_b, seed):
        current = ctx.sets.get(handle)
        try:
            if current is None:
                raise UserInputError(explore_tab.LET_GO if handle else "Load records first.")
            return ordered(RUNS_OUT, runs_shown(runs_view(current, name_a, name_b, seed)))
        except UserInputError as exc:
            return ordered(RUNS_OUT, runs_shown(RunsView(None, status_html("failed", str(exc)))))

    def open_disagreement(evt: gr.SelectData, handle, opened, names, videos_by_name):
        shown = disagreement_detail(ctx, ctx.sets.get(handle), opened, evt.row_value, videos_by_name, names)
        return ordered(OPEN_OUT, shown or {})

    def ranked_generators(handle, column, source, seed, groups_path, *query_values):
        current = ctx.sets.get(handle)
        try:
            if current is None:
                raise UserInputError(explore_tab.LET_GO if handle else "Load records first.")
            rows = select(current, explore_tab.query_of(query_values))
            return ordered(GEN_OUT, generators_shown(generators_view(current, rows, column, source, seed, groups_path)))
        except UserInputError as exc:
            return ordered(GEN_OUT, generators_shown(GeneratorsView(None, status_html("failed", str(exc)))))

    def columns(handle, groups_path):
        choices = column_choices(ctx.sets.get(handle), groups_path)
        return gr.update(choices=choices, value="generator" if "generator" in choices else (choices[0] if choices else None))

    ui["collection"].change(reset, inputs=[ui["collection"]], outputs=components(RESET_OUT), **private)
    ui["compare_runs"].click(compared_runs, inputs=components(("collection", "run_a", "run_b", "runs_seed")),
                             outputs=components(RUNS_OUT), **private)
    ui["runs_disagreements"].select(open_disagreement, inputs=components(("collection", "runs_opened", "runs_names",
                                                                          "videos_by_name")),
                                    outputs=components(OPEN_OUT), **private)
    ui["gen_groups"].change(columns, inputs=components(("collection", "gen_groups")), outputs=[ui["gen_by"]], **private)
    ui["rank_generators"].click(ranked_generators, inputs=components(("collection", "gen_by", "gen_source", "gen_seed", "gen_groups"))
                                + components(explore_tab.QUERY_FIELDS), outputs=components(GEN_OUT), **private)
