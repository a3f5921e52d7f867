"""Pure: result records -> plotly figures. No torch, no Gradio."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import DIMENSIONS
from .results import SCORE_LEVELS, ScoreResult, ranking_value

SHORT_LABELS = {
    "visual_quality": "Visual quality",
    "text_alignment": "Text alignment",
    "physical_consistency": "Physical consistency",
    "overall": "Overall",
}
# Calm, colour-blind-safe (Okabe-Ito) colours, one per compared video.
SERIES_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
SCORE_COLOR = "#0072B2"
EXPECTED_COLOR = "#D55E00"


def _layout(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 15}},
        height=height,
        margin={"l": 40, "r": 16, "t": 48, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.18, "x": 0},
        font={"size": 12},
    )
    return fig


def scores_figure(result: ScoreResult) -> go.Figure:
    """The three integer scores as bars, each with its expected value as a marker."""
    labels = [SHORT_LABELS[key] for key in DIMENSIONS]
    dims = [result.scores[key] for key in DIMENSIONS]
    fig = go.Figure()
    fig.add_bar(
        x=labels,
        y=[d.score or 0 for d in dims],
        name="score",
        marker_color=SCORE_COLOR,
        opacity=0.75,
        width=0.5,
        hovertemplate="%{x}: score %{y}<extra></extra>",
    )
    fig.add_scatter(
        x=labels,
        y=[d.expected for d in dims],
        name="expected value",
        mode="markers+text",
        marker={"symbol": "diamond", "size": 13, "color": EXPECTED_COLOR, "line": {"width": 1, "color": "white"}},
        text=[("" if d.expected is None else f"expected {d.expected:.2f}") for d in dims],
        # Above the marker, never beside it: beside the last bar it ran off the plot ("expected 3.9").
        textposition="top center",
        cliponaxis=False,
        hovertemplate="%{x}: expected %{y:.2f}<extra></extra>",
    )
    fig.update_yaxes(range=[0, 5.9], dtick=1, title="score (1-5)")
    return _layout(fig, "Scores and expected values")


def probabilities_figure(result: ScoreResult) -> go.Figure:
    """Each dimension's probability over the scores 1-5 at the step where the score was written."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[SHORT_LABELS[key] for key in DIMENSIONS], shared_yaxes=True)
    for column, key in enumerate(DIMENSIONS, start=1):
        dim = result.scores[key]
        probs = dim.probs or (0.0,) * len(SCORE_LEVELS)
        colors = [EXPECTED_COLOR if level == dim.score else SCORE_COLOR for level in SCORE_LEVELS]
        fig.add_bar(
            x=[str(level) for level in SCORE_LEVELS],
            y=list(probs),
            marker_color=colors,
            showlegend=False,
            text=[f"{p:.0%}" if p >= 0.005 else "" for p in probs],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="score %{x}: p = %{y:.3f}<extra></extra>",
            row=1,
            col=column,
        )
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%")
    fig.update_yaxes(title="probability", row=1, col=1)
    fig.update_xaxes(title="score")
    return _layout(fig, "How sure the model was: p(score) for each dimension")


def comparison_figure(results: list[ScoreResult], names: list[str]) -> go.Figure:
    """Expected score per dimension (and overall), one bar per video, grouped by dimension."""
    keys = list(DIMENSIONS) + ["overall"]
    fig = go.Figure()
    for index, (result, name) in enumerate(zip(results, names)):
        values = [ranking_value(result, key) for key in keys]
        fig.add_bar(
            x=[SHORT_LABELS[key] for key in keys],
            y=[v or 0 for v in values],
            name=name,
            marker_color=SERIES_COLORS[index % len(SERIES_COLORS)],
            text=[("-" if v is None else f"{v:.2f}") for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.2f}}<extra></extra>",
        )
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(range=[0, 5.6], dtick=1, title="expected score")
    return _layout(fig, "Expected scores side by side", height=360)


def ranking_figure(results: list[ScoreResult], names: list[str], by: str = "overall") -> go.Figure:
    """Horizontal bars, best at the top, for the chosen ranking key."""
    rows = [(name, ranking_value(r, by)) for r, name in zip(results, names)]
    rows = [row for row in rows if row[1] is not None]
    rows.sort(key=lambda row: row[1])  # plotly draws the first bar at the bottom
    fig = go.Figure()
    fig.add_bar(
        x=[value for _, value in rows],
        y=[name for name, _ in rows],
        orientation="h",
        marker_color=[SCORE_COLOR] * (len(rows) - 1) + [EXPECTED_COLOR] if rows else [],
        text=[f"{value:.2f}" for _, value in rows],
        textposition="outside",
        cliponaxis=False,
        hovertemplate="%{y}: %{x:.2f}<extra></extra>",
    )
    fig.update_xaxes(range=[0, 5.6], dtick=1, title=f"{SHORT_LABELS[by].lower()} (expected score)")
    return _layout(fig, f"Ranking by {SHORT_LABELS[by].lower()}", height=max(220, 60 + 34 * len(rows)))


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
    fig.update_xaxes(range=[0, 1.02], title="confidence (max p of the five scores)", tickformat=".0%")
    fig.update_yaxes(range=[0, 1.05], title="share matching people", tickformat=".0%")
    fig = _layout(fig, "Calibration: p(1..5) against people's labels", height=380)
    # The legend under the axis title, not on it.
    fig.update_layout(legend={"orientation": "h", "y": -0.3, "x": 0}, margin={"b": 90})
    return fig


def confusion_figure(report: dict) -> go.Figure:
    """Per dimension, the counts of (people's label, model's rounded score)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[SHORT_LABELS[key] for key in DIMENSIONS],
                        horizontal_spacing=0.08)
    levels = [str(level) for level in SCORE_LEVELS]
    for column, key in enumerate(DIMENSIONS, start=1):
        matrix = report["dimensions"][key].get("confusion") or [[0] * 5 for _ in range(5)]
        fig.add_heatmap(z=matrix, x=levels, y=levels, colorscale="Blues", showscale=False,
                        text=[[str(v) if v else "" for v in row] for row in matrix], texttemplate="%{text}",
                        hovertemplate="people %{y}, model %{x}: %{z}<extra></extra>", row=1, col=column)
        fig.update_xaxes(title="model", row=1, col=column)
    fig.update_yaxes(title="people", row=1, col=1)
    return _layout(fig, "Confusion: people's label (rows) against the model's rounded score", height=340)
