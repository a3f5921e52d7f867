"""About: the three dimensions in plain words, the model and how it is loaded, the settings."""

from __future__ import annotations

import gradio as gr

from ..scoring import ModelStatus
from ..settings import Settings

DIMENSIONS_TEXT = """
### What VideoScore2 judges
VideoScore2 watches an AI-generated video, reads the prompt it was generated from, **writes its
reasoning first**, and then gives three scores from 1 (bad) to 5 (good):

| dimension | what it asks |
|---|---|
| **Visual quality** | Is the video clear and smooth? Blur, flicker, noise, distortions and other artifacts lower it. |
| **Text-to-video alignment** | Does the video show what the prompt asks for: the subjects, actions, count, colours, setting? |
| **Physical / common-sense consistency** | Could this happen? Objects that melt into each other, teleport, or move against physics lower it. |

**Expected value and confidence.** When the model writes a score digit, the app also reads how likely
it found each of the five digits at that moment. The *expected value* is the average score weighted by
those probabilities (a 4 written with a good chance of 3 is about 3.7); the *confidence* is the
probability of the digit it wrote. The overall score is the mean of the three expected values.

The model is [TIGER-Lab/VideoScore2](https://huggingface.co/TIGER-Lab/VideoScore2) (a Qwen2.5-VL-7B
fine-tune; paper: *Think before You Score in Generative Video Evaluation*, arXiv 2509.22799). Frames are
sampled at 2 per second and resized exactly as in the authors' code. Decoding is greedy by default, so
the same video and prompt always get the same answer.
"""


WEIGHTS_TEXT = {
    "4bit": "4-bit nf4 with double quantization; vision tower and lm_head in 16-bit",
    "8bit": "8-bit; vision tower and lm_head in 16-bit",
    "none": "not quantized",
}


def model_markdown(model: ModelStatus, settings: Settings) -> str:
    options = settings.options
    lines = ["### The model in this app"]
    if model.state == "loading":
        lines.append(f"Loading **{settings.model}** ({settings.quant}, device {settings.device})… "
                     f"{model.loading_s:.0f} s so far.")
    elif model.state == "failed":
        lines.append(f"**{settings.model}** could not be loaded: {model.error}")
    else:
        info = model.info
        if model.fallback_reason:
            lines.append(f"**{settings.model}** cannot run here, so the toy model runs instead: {model.fallback_reason}")
        lines += [
            "| | this app |", "|---|---|",
            f"| model | `{info.model}`{' (toy model: its scores mean nothing)' if info.is_toy else ''} |",
            f"| weights | {WEIGHTS_TEXT.get(info.quant, info.quant)} |",
            f"| device, compute dtype | {info.device}, {info.dtype} |",
            f"| parameters | {info.parameters / 1e9:.2f} B |" if info.parameters > 1e8 else f"| parameters | {info.parameters:,} |",
            f"| memory of the weights | {info.memory_bytes / 2**30:.2f} GiB |" if info.memory_bytes > 2**27 else f"| memory of the weights | {info.memory_bytes / 2**20:.1f} MiB |",
            f"| GPU memory in use | {gpu_memory_text()} |",
            f"| loaded in | {info.load_s:.1f} s |",
        ]
    lines += [
        "", "### Default settings", "| setting | default |", "|---|---|",
        f"| prompt template | {options.template} |",
        f"| frames | {options.fps:g} per second, at most {options.max_frames} |",
        f"| decoding | {'sampling, temperature ' + str(options.temperature) if options.do_sample else 'greedy'} |",
        f"| max new tokens | {options.max_new_tokens} |",
    ]
    return "\n".join(lines)


def gpu_memory_text() -> str:
    import torch

    if not torch.cuda.is_available():
        return "no GPU"
    return (f"{torch.cuda.memory_allocated() / 2**30:.2f} GiB allocated, "
            f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def build(model_status, settings: Settings) -> gr.Markdown:
    """`model_status()`: the model's (scoring.ModelStatus); `settings`: what the app runs with."""
    with gr.Tab("About", id="about") as tab:
        gr.Markdown(DIMENSIONS_TEXT)
        details = gr.Markdown(model_markdown(model_status(), settings), elem_id="about-model")
    tab.select(lambda: model_markdown(model_status(), settings), outputs=[details], api_visibility="private", queue=False)
    return details
