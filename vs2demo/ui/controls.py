"""Inputs several tabs share: the scoring settings accordion and the example clips."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..prompts import TEMPLATES
from ..settings import (
    FPS_RANGE, MAX_FRAMES_RANGE, MAX_NEW_TOKENS_RANGE, PRESETS, SEED_RANGE, TEMPERATURE_RANGE, ScoreOptions,
    request_options,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DECODING_CHOICES = ["greedy (repeatable)", "sampling"]
READING_CHOICES = [("the answer block, p(1..5) before temperature (this app)", "answer"),
                   ("as the authors' script: its regex, p(1..5) after temperature", "authors")]


@dataclass
class SettingsControls:
    template: gr.Radio
    fps: gr.Slider
    max_frames: gr.Slider
    decoding: gr.Radio
    temperature: gr.Slider
    seed: gr.Number
    max_new_tokens: gr.Slider
    reading: gr.Radio
    attention: gr.Checkbox | None = None  # Evaluate's only: not among inputs(), which every tab reads

    def inputs(self) -> list:
        return [self.template, self.fps, self.max_frames, self.decoding, self.temperature, self.seed, self.max_new_tokens,
                self.reading]


ATTENTION_LABEL = "Show where it looked (attention)"


def settings_accordion(defaults: ScoreOptions, open: bool = False, attention_backend: str | None = None) -> SettingsControls:
    """The options every tab shares; with `attention_backend` (the backend's name), also the attention
    box, which only the transformers backend can honour: another says so and it cannot be ticked."""
    with gr.Accordion("Scoring options", open=open):
        with gr.Row():
            template = gr.Radio(list(TEMPLATES), value=defaults.template, label="Prompt template",
                                info="card: the model card's; eval: the paper's, with a definition per dimension; "
                                     "inference: the card's as the authors' script sends it")
            decoding = gr.Radio(DECODING_CHOICES, value=DECODING_CHOICES[1] if defaults.do_sample else DECODING_CHOICES[0],
                                label="Decoding", info="greedy gives one answer per input; sampling varies run to run")
        with gr.Row():
            # The ranges are the ones every request is checked against (settings.py): one place for both.
            fps = gr.Slider(*FPS_RANGE, value=defaults.fps, step=0.1, label="Frames per second sampled")
            max_frames = gr.Slider(*MAX_FRAMES_RANGE, value=defaults.max_frames, step=2, label="Max frames")
        with gr.Row():
            temperature = gr.Slider(*TEMPERATURE_RANGE, value=defaults.temperature, step=0.01, label="Temperature (sampling)")
            seed = gr.Number(value=defaults.seed if defaults.seed is not None else 0, precision=0, minimum=SEED_RANGE[0],
                             maximum=SEED_RANGE[1], label="Seed (sampling)")
            max_new_tokens = gr.Slider(*MAX_NEW_TOKENS_RANGE, value=defaults.max_new_tokens, step=16, label="Max new tokens")
        with gr.Row():
            reading = gr.Radio(READING_CHOICES, value=defaults.reading, label="Read the scores",
                               info="where each score and its probabilities are read; the record says which")
        attention = None
        if attention_backend is not None:
            available = attention_backend == "transformers"
            attention = gr.Checkbox(False, label=ATTENTION_LABEL, interactive=available, elem_id="evaluate-attention-on",
                                    info="per score, its share of attention on each pair of frames and each prompt "
                                         "word; a little slower" if available else
                                         f"not available with the {attention_backend} backend (it reports no attention)")
        with gr.Row():
            authors = gr.Button("Use the authors' settings", size="sm", variant="secondary")
            ours = gr.Button("Back to this app's defaults", size="sm", variant="secondary")
    controls = SettingsControls(template, fps, max_frames, decoding, temperature, seed, max_new_tokens, reading,
                                attention)

    def values_of(options: ScoreOptions) -> list:
        return [options.template, options.fps, options.max_frames,
                DECODING_CHOICES[1] if options.do_sample else DECODING_CHOICES[0], options.temperature,
                options.seed if options.seed is not None else 0, options.max_new_tokens, options.reading]

    # The authors' public inference (settings.PRESETS) in one click; the record then says so.
    authors.click(lambda: values_of(ScoreOptions(**PRESETS["authors"])), outputs=controls.inputs(), queue=False,
                  api_visibility="private")
    ours.click(lambda: values_of(defaults), outputs=controls.inputs(), queue=False, api_visibility="private")
    return controls


def options_from(template, fps, max_frames, decoding, temperature, seed, max_new_tokens, reading) -> ScoreOptions:
    """The settings accordion's values as checked options (UserInputError says which is wrong):
    the same check as the API's and the CLI's."""
    return request_options(ScoreOptions(), template=template, fps=fps, max_frames=max_frames,
                           do_sample=decoding == DECODING_CHOICES[1], temperature=temperature, seed=seed,
                           max_new_tokens=max_new_tokens, reading=reading)


def example_rows() -> list[dict]:
    """The example clips shipped in assets/ with their prompts (assets/examples.csv)."""
    index = ASSETS / "examples.csv"
    if not index.exists():
        return []
    with index.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if (ASSETS / row["video"]).exists()]
    for row in rows:
        row["path"] = str(ASSETS / row["video"])
    return rows
