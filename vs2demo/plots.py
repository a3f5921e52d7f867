"""Pure: result records -> plotly figures. No torch, no Gradio.

Every figure is drawn for a phone's width (a plot about 330 px wide) as well as a laptop's: the
server cannot know the screen, and the page resizes a figure to its box (Gradio sets plotly's
`responsive`). So titles are short and sit below the toolbar, legends go under the x axis labels,
axis labels never need turning, and what would crowd side by side is stacked or wrapped.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import DIMENSION_TITLES, DIMENSIONS
from .ranking import ranking_value, standings
from .results import SCORE_LEVELS, ScoreResult

SHORT_LABELS = {**DIMENSION_TITLES, "overall": "Overall"}
# The same labels on two lines, for axes and subplot titles: side by side, three or four of them
# fit a phone's width only that way ("Visual qualityText alignmPhysical consister" otherwise).
AXIS_LABELS = {key: label.replace(" ", "<br>", 1) for key, label in SHORT_LABELS.items()}
# Calm, colour-blind-safe (Okabe-Ito) colours, one per compared video.
SERIES_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
SCORE_COLOR = "#0072B2"
EXPECTED_COLOR = "#D55E00"

# The plotly toolbar keeps "download as a picture" only: fewer buttons, a toolbar that covers less.
MODEBAR_REMOVE = ["zoom", "pan", "select", "lasso", "zoomIn", "zoomOut", "autoScale", "resetScale",
                  "toggleSpikelines", "hoverClosestCartesian", "hoverCompareCartesian"]
TOOLBAR_PX = 46  # the toolbar (and the page's label of the plot) take the figure's top; the title goes below
NAME_CHARS = 22  # a name on an axis at most this long: a long file name would leave no room for its bar


def _layout(fig: go.Figure, title: str, height: int = 320, legend: bool = True) -> go.Figure:
    """The house layout: a title of at most ~38 characters (it must fit a phone) under the toolbar,
    and the legend, if any, under the plot, anchored to the figure's bottom edge."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "yref": "container", "y": 1, "yanchor": "top",
               "pad": {"t": TOOLBAR_PX}, "font": {"size": 14}},
        height=height, margin={"l": 40, "r": 16, "t": TOOLBAR_PX + 44, "b": 80 if legend else 44},
        template="plotly_white", showlegend=legend, font={"size": 12}, modebar={"remove": MODEBAR_REMOVE},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "xanchor": "left"})
    return fig


def short_name(name: str, most: int = NAME_CHARS) -> str:
    """`a_very_long_gen…1234.mp4`: the start and the end of a long name (the end tells files apart)."""
    if len(name) <= most:
        return name
    tail = (most - 1) // 2
    return name[:most - 1 - tail] + "…" + name[-tail:]


def scores_figure(result: ScoreResult) -> go.Figure:
    """The three integer scores as bars, each with its expected value as a marker, and the expected
    value written above both, clear of the bar's edges."""
    labels = [AXIS_LABELS[key] for key in DIMENSIONS]
    dims = [result.scores[key] for key in DIMENSIONS]
    fig = go.Figure()
    fig.add_bar(x=labels, y=[d.score or 0 for d in dims], name="score", marker_color=SCORE_COLOR, opacity=0.75,
                width=0.5, hovertemplate="score %{y}<extra></extra>")
    fig.add_scatter(
        x=labels, y=[d.expected for d in dims], name="expected value", mode="markers",
        marker={"symbol": "diamond", "size": 13, "color": EXPECTED_COLOR, "line": {"width": 1, "color": "white"}},
        hovertemplate="expected %{y:.2f}<extra></extra>")
    # The label sits above the bar's top and the marker, whichever is higher, so it never lies
    # half on the bar and half off it.
    fig.add_scatter(
        x=labels, y=[max(d.score or 0, d.expected or 0) + 0.3 for d in dims], mode="text", showlegend=False,
        text=[("" if d.expected is None else f"expected<br>{d.expected:.2f}") for d in dims],
        textposition="top center", textfont={"size": 11, "color": EXPECTED_COLOR}, cliponaxis=False, hoverinfo="skip")
    fig.update_xaxes(tickangle=0)
    fig.update_yaxes(range=[0, 6.2], dtick=1, title="score (1-5)")
    return _layout(fig, "Scores and expected values", height=360)


def probabilities_figure(result: ScoreResult) -> go.Figure:
    """Each dimension's probability over the scores 1-5 at the step where the score was written:
    one row a dimension, so each has the figure's whole width."""
    fig = make_subplots(rows=len(DIMENSIONS), cols=1, shared_xaxes=True, vertical_spacing=0.16,
                        subplot_titles=[SHORT_LABELS[key] for key in DIMENSIONS])
    for row, key in enumerate(DIMENSIONS, start=1):
        dim = result.scores[key]
        probs = dim.probs or (0.0,) * len(SCORE_LEVELS)
        colors = [EXPECTED_COLOR if level == dim.score else SCORE_COLOR for level in SCORE_LEVELS]
        fig.add_bar(
            x=[str(level) for level in SCORE_LEVELS], y=list(probs), marker_color=colors, showlegend=False,
            text=[f"{p:.0%}" if p >= 0.005 else "" for p in probs], textposition="outside", cliponaxis=False,
            hovertemplate="score %{x}: p = %{y:.3f}<extra></extra>", row=row, col=1)
    # The row titles at each row's left, over its own bars, not centred where they would meet the axis.
    fig.update_annotations(x=0, xanchor="left", font={"size": 13})
    fig.update_yaxes(range=[0, 1.3], dtick=0.5, tickformat=".0%")
    fig.update_xaxes(title="score (the one written in orange)", row=len(DIMENSIONS), col=1)
    return _layout(fig, "How sure it was: p(score)", height=460, legend=False)


def comparison_figure(results: list[ScoreResult], names: list[str]) -> go.Figure:
    """Expected score per dimension (and overall), one bar per video, grouped by dimension. The bars
    lie down, so each value has a line of its own at any width."""
    keys = list(DIMENSIONS) + ["overall"]
    fig = go.Figure()
    for index, (result, name) in enumerate(zip(results, names)):
        values = [ranking_value(result, key) for key in keys]
        fig.add_bar(
            y=[AXIS_LABELS[key] for key in keys], x=[v or 0 for v in values], orientation="h", name=name,
            marker_color=SERIES_COLORS[index % len(SERIES_COLORS)],
            text=[("not scored" if v is None else f"{v:.2f}") for v in values], textposition="outside",
            cliponaxis=False, hovertemplate=f"{name}: %{{x:.2f}}<extra></extra>")
    fig.update_layout(barmode="group", bargap=0.28, bargroupgap=0.08, legend={"traceorder": "normal"})
    # The first dimension at the top, and in each group the videos in order, Video 1 first.
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(range=[0, 5.8], dtick=1, title="expected score")
    return _layout(fig, "Expected scores side by side", height=150 + len(keys) * (18 * len(results) + 26))


def ranking_figure(results: list[ScoreResult], names: list[str], by: str = "overall") -> go.Figure:
    """Horizontal bars, best at the top, for the chosen ranking key; the first place in orange (every
    video of it when several tie: ranking.standings)."""
    placed = [standing for standing in standings(results, by) if standing.place is not None]
    fig = go.Figure()
    fig.add_bar(
        x=[standing.value for standing in placed], y=[short_name(names[standing.index]) for standing in placed],
        customdata=[names[standing.index] for standing in placed], orientation="h",
        marker_color=[EXPECTED_COLOR if standing.place == 1 else SCORE_COLOR for standing in placed],
        text=[f"{standing.value:.2f}" + (" (tie)" if standing.tied else "") for standing in placed],
        textposition="outside", cliponaxis=False, hovertemplate="%{customdata}: %{x:.2f}<extra></extra>")
    fig.update_yaxes(autorange="reversed")  # the best at the top
    fig.update_xaxes(range=[0, 6.2], dtick=1, title="expected score")
    return _layout(fig, f"Ranking by {SHORT_LABELS[by].lower()}", height=max(240, 130 + 34 * len(placed)),
                   legend=False)


def reliability_figure(report: dict) -> go.Figure:
    """Per dimension, how often the model's most likely score matched people's against how sure it
    was (equal-width confidence bins; the diagonal is perfect calibration), with ECE in the legend."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"color": "#999999", "dash": "dot"}, name="calibrated",
                    hoverinfo="skip")
    for color, key in zip(SERIES_COLORS, DIMENSIONS):
        dim = report["dimensions"][key]
        bins = [b for b in (dim.get("calibration") or {}).get("bins", []) if b["n"]]
        if not bins:
            continue
        fig.add_scatter(x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
                        marker={"size": [6 + min(14, b["n"] ** 0.5) for b in bins], "color": color},
                        line={"color": color}, name=f"{SHORT_LABELS[key]} (ECE {dim['ece']:.3f})",
                        customdata=[b["n"] for b in bins],
                        hovertemplate="sure %{x:.2f}, right %{y:.2f} (%{customdata} videos)<extra></extra>")
    fig.update_xaxes(range=[0, 1.02], title="confidence (max p of the 5)", tickformat=".0%")
    fig.update_yaxes(range=[0, 1.05], title="share matching people", tickformat=".0%")
    fig = _layout(fig, "Calibration against people's labels", height=440)
    # Four legend entries wrap to four lines on a phone: room for them under the axis title.
    fig.update_layout(margin={"b": 124})
    return fig


def confusion_figure(report: dict, rows: str = "people", columns: str = "model",
                     title: str = "Confusion: people (rows) vs model") -> go.Figure:
    """Per dimension, the counts of (people's label, model's rounded score); or of any two scorers'
    (`rows`, `columns`: their names on the axes, short)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[AXIS_LABELS[key] for key in DIMENSIONS],
                        horizontal_spacing=0.07)
    levels = [str(level) for level in SCORE_LEVELS]
    for column, key in enumerate(DIMENSIONS, start=1):
        matrix = report["dimensions"][key].get("confusion") or [[0] * 5 for _ in range(5)]
        fig.add_heatmap(z=matrix, x=levels, y=levels, colorscale="Blues", showscale=False,
                        text=[[str(v) if v else "" for v in row] for row in matrix], texttemplate="%{text}",
                        textfont={"size": 10},
                        hovertemplate=f"{rows} %{{y}}, {columns} %{{x}}: %{{z}}<extra></extra>", row=1, col=column)
        fig.update_xaxes(title=columns, row=1, col=column)
    fig.update_annotations(font={"size": 12})
    fig.update_yaxes(title=rows, row=1, col=1)
    return _layout(fig, title, height=360, legend=False)


def generators_figure(report: dict) -> go.Figure:
    """Per dimension (stacked: they fit a phone), each generator's mean with its 95% interval as
    whiskers, the best on top; generators sharing a colour and a letter are not told apart
    (`generators.rank_generators`' groups)."""
    dimensions = report["dimensions"]
    count = max((len(dimensions[key]["ranking"]) for key in DIMENSIONS), default=1)
    fig = make_subplots(rows=3, cols=1, subplot_titles=[SHORT_LABELS[key] for key in DIMENSIONS],
                        vertical_spacing=0.32 / max(count, 3) + 0.06)
    for row, key in enumerate(DIMENSIONS, start=1):
        ranking = dimensions[key]["ranking"]
        # Ranked, so two long names shortened alike stay two rows; escaped, as plotly reads tags in text.
        names = [f"{entry['rank']}. {html.escape(short_name(entry['generator']))} ({entry['group']})" for entry in ranking]
        means = [entry["mean"] for entry in ranking]
        low = [entry["mean"] - entry["ci"][0] if entry["ci"] else 0 for entry in ranking]
        high = [entry["ci"][1] - entry["mean"] if entry["ci"] else 0 for entry in ranking]
        colors = [SERIES_COLORS[(ord(entry["group"][0]) - ord("a")) % len(SERIES_COLORS)] for entry in ranking]
        fig.add_scatter(x=means, y=names, mode="markers", marker={"size": 10, "color": colors},
                        error_x={"type": "data", "symmetric": False, "array": high, "arrayminus": low,
                                 "color": "#555555", "thickness": 1.5, "width": 4},
                        customdata=[[entry["videos"], html.escape(entry["generator"])] for entry in ranking],
                        hovertemplate="%{customdata[1]}: mean %{x:.2f} over %{customdata[0]} videos<extra></extra>",
                        row=row, col=1)
        fig.update_yaxes(categoryorder="array", categoryarray=names[::-1], automargin=True, row=row, col=1)
    fig.update_xaxes(title="mean score, 95% interval", row=3, col=1)
    fig.update_annotations(font={"size": 12})
    fig = _layout(fig, "Generators: mean and 95% interval", height=200 + 3 * (60 + 24 * count), legend=False)
    fig.update_layout(margin={"l": 8})
    return fig
