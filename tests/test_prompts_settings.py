"""The prompt templates are the authors' bytes; settings come from flags and the environment."""

import re
from pathlib import Path

import pytest

from vs2demo.errors import UserInputError
from vs2demo.prompts import build_messages, clean_prompt, load_template, render_prompt
from vs2demo.settings import ENV_VARS, ScoreOptions, request_options, settings_from_env

SHARED_PROMPTS = Path(__file__).resolve().parents[2] / "shared" / "prompts"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name", ["card", "eval"])
def test_templates_are_the_authors_bytes(name):
    shipped = load_template(name)
    reference = SHARED_PROMPTS / f"{name}.txt"
    if reference.exists():  # ../shared sits beside the checkout in development and CI
        assert shipped.encode("utf-8") == reference.read_bytes()
    assert "–" in shipped or name == "eval"  # the U+2013 dashes the model saw
    assert shipped.count("$t2v_prompt") == 1


def test_prompt_is_substituted_verbatim_even_with_dollars():
    text = render_prompt("A cat costs $5 and $t2v_prompt stays text", "card")
    assert "Video prompt: A cat costs $5 and $t2v_prompt stays text\n" in text


def test_messages_put_the_video_first_and_no_system_turn():
    messages = build_messages("a red ball", "eval")
    assert [m["role"] for m in messages] == ["user"]
    assert [part["type"] for part in messages[0]["content"]] == ["video", "text"]
    assert "a red ball." in messages[0]["content"][1]["text"]


@pytest.mark.parametrize("prompt", ["", "   \n", None, "x" * 10_000])
def test_empty_or_huge_prompt_is_a_user_error_that_says_what_to_do(prompt):
    with pytest.raises(UserInputError) as info:
        clean_prompt(prompt)
    assert "prompt" in str(info.value).lower()


def test_unknown_template_is_a_user_error():
    with pytest.raises(UserInputError, match="card, eval"):
        load_template("fancy")


def test_settings_from_environment_then_flags():
    env = {"VS2_MODEL": "/models/vs2", "VS2_QUANT": "8bit", "VS2_MAX_FRAMES": "32", "VS2_FPS": "1.5"}
    settings = settings_from_env(env)
    assert settings.model == "/models/vs2" and settings.quant == "8bit"
    assert settings.options.max_frames == 32 and settings.options.fps == 1.5
    settings = settings_from_env(env, quant="none", max_frames=16, template="eval")
    assert settings.quant == "none" and settings.options.max_frames == 16 and settings.options.template == "eval"
    assert settings_from_env({}).options == ScoreOptions()


@pytest.mark.parametrize("env", [{"VS2_QUANT": "3bit"}, {"VS2_DEVICE": "tpu"}, {"VS2_MAX_FRAMES": "lots"}, {"VS2_FPS": "0"}])
def test_bad_settings_are_user_errors(env):
    with pytest.raises(UserInputError):
        settings_from_env(env)


def test_without_flags_or_environment_a_user_gets_the_documented_defaults():
    # README's settings table names each variable's default; decoding is greedy by default (README:
    # "the same input always gets the same answer").
    readme = README.read_text(encoding="utf-8")
    # (a variable with no default, such as VS2_VLLM_URL, has an empty cell)
    documented = dict(re.findall(r"^\|[^|\n]*\| `(VS2_\w+)` \| (?:`([^`]*)`)? ?\|", readme, re.M))
    settings = settings_from_env({})
    for name, variable in ENV_VARS.items():
        value = getattr(settings.options, name) if hasattr(settings.options, name) else getattr(settings, name)
        assert variable in documented, variable
        assert documented[variable] == ("" if value is None else str(value)), variable
    assert settings.options.do_sample is False


def test_one_check_for_every_option_whoever_sends_it():
    # What the page's sliders send (floats) is taken in its plain type ...
    options = request_options(ScoreOptions(), max_frames=64.0, max_new_tokens=512.0, fps=2)
    assert options.max_frames == 64 and isinstance(options.max_frames, int) and options.fps == 2.0
    # ... a seed is checked even for greedy decoding, and then dropped: it would have no effect.
    assert request_options(ScoreOptions(), seed=7).seed is None
    assert request_options(ScoreOptions(), seed=7, do_sample=True).seed == 7
    with pytest.raises(UserInputError, match="seed must be a whole number"):
        request_options(ScoreOptions(), seed=-1)
    for bad in ({"fps": True}, {"fps": float("inf")}, {"max_frames": "64"}, {"max_frames": 4.5},
                {"do_sample": 1}, {"temperature": 9.0, "do_sample": True}, {"max_new_tokens": 10**9},
                {"template": ["card"]}):
        with pytest.raises(UserInputError, match=next(iter(bad))):
            request_options(ScoreOptions(), **bad)


def test_a_long_odd_value_is_quoted_short():
    with pytest.raises(UserInputError) as info:
        request_options(ScoreOptions(), template="x" * 1_000_000)
    assert len(str(info.value)) < 200


def test_max_batch_comes_from_the_environment_and_is_checked():
    assert settings_from_env({"VS2_MAX_BATCH": "5"}).max_batch == 5
    for value in ("0", "lots", "100000"):
        with pytest.raises(UserInputError, match="max_batch|VS2_MAX_BATCH"):
            settings_from_env({"VS2_MAX_BATCH": value})
