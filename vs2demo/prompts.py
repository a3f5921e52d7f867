"""The prompt templates VideoScore2 was trained and evaluated with, and the chat messages.

The templates are package data, byte for byte as the authors wrote them (typos, U+2013 dashes and
trailing spaces included): the model saw exactly these bytes. `card` and `eval` are the model
card's and the paper's; `inference` is the model card's as the authors' `vs2_inference.py` writes it
(inside an indented triple-quoted string: a leading newline, four spaces before every line, and
trailing spaces), which their public script sends.
"""

from __future__ import annotations

from importlib import resources

from .errors import UserInputError

TEMPLATES = ("card", "eval", "inference")
DEFAULT_TEMPLATE = "card"
PLACEHOLDER = "$t2v_prompt"
MAX_PROMPT_CHARS = 2000


def load_template(name: str = DEFAULT_TEMPLATE) -> str:
    if name not in TEMPLATES:
        raise UserInputError(f"Unknown prompt template {name!r}: choose one of {', '.join(TEMPLATES)}.")
    return resources.files("vs2demo.prompt_templates").joinpath(f"{name}.txt").read_text(encoding="utf-8")


# The authors' vs2_inference.py puts the prompt into its template as it was given (no strip): with
# that template, so does this app; the others send it stripped.
AS_GIVEN_TEMPLATES = ("inference",)


def clean_prompt(prompt: str | None, allow_empty: bool = False, template: str = DEFAULT_TEMPLATE) -> str:
    """The generation prompt as the model will see it under `template` (stripped, or as given under
    AS_GIVEN_TEMPLATES), or a UserInputError saying what is wrong.

    `allow_empty`: an empty (or blank) prompt is accepted and gives "" (the Evaluate tab's "Does the
    prompt matter?" scores a video with no prompt at all); the length limit still holds."""
    given = prompt or ""
    text = given.strip()
    if not text and not allow_empty:
        raise UserInputError("The prompt is empty: give the text the video was generated from.")
    if text and template in AS_GIVEN_TEMPLATES:
        text = given
    if len(text) > MAX_PROMPT_CHARS:
        raise UserInputError(
            f"The prompt is {len(text):,} characters long; at most {MAX_PROMPT_CHARS:,} are accepted. "
            "Generation prompts are rarely longer than a paragraph: shorten it."
        )
    return text


def render_prompt(prompt: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The template with the prompt in it. An empty prompt gives the template with nothing after
    "Video prompt:": whether one may be empty is for the caller to say (`Scorer.score` refuses it
    unless asked not to), and the backend renders the prompt it was handed."""
    # str.replace, not string.Template: a user's prompt may contain '$'.
    return load_template(template).replace(PLACEHOLDER, clean_prompt(prompt, allow_empty=True, template=template))


def build_messages(prompt: str, template: str = DEFAULT_TEMPLATE) -> list[dict]:
    """One user turn, the video first and then the text, with no system message: the chat template
    adds Qwen's default system turn, as in training."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "video"},
                {"type": "text", "text": render_prompt(prompt, template)},
            ],
        }
    ]
