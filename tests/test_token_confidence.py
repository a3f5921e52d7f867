"""Token confidence (#14, item 1): per generated token the chosen token's probability, the step's
entropy and its top alternatives, kept by the engine, in the record, and shown in the page."""

import json
import math
import re

import pytest
import torch

from vs2demo.backends.transformers import PieceDecoder, StepRecorder, token_pieces
from vs2demo.parsing import parse
from vs2demo.confidence import MIN_ALTERNATIVE_P, TokenConfidence, least_certain_passages
from vs2demo.results import ScoreResult
from vs2demo.scoring import Scorer
from vs2demo.settings import ScoreOptions, Settings
from vs2demo.ui.render import confidence_html

PROMPT = "A red ball rolls and bounces across a grey studio floor."


@pytest.fixture(scope="module")
def engine(toy_model_dir):
    return Scorer(Settings(model=str(toy_model_dir), quant="none", device="cpu")).start_loading(background=False)


def test_a_greedy_record_holds_one_entry_per_generated_token(engine, clean_clip):
    result = engine.score_to_result(clean_clip, PROMPT)
    tokens = result.tokens
    assert result.error is None and tokens is not None
    assert len(tokens) == result.timings["new_tokens"]
    assert tokens.text == result.text  # the pieces join to the answer: offsets index it
    assert all(0 < p <= 1 for p in tokens.p)
    assert all(e >= 0 for e in tokens.entropy)
    for index, piece in enumerate(tokens.pieces):
        # Greedy chose the most likely token: it leads the alternatives, with the same probability.
        assert tokens.alternative_p[index][0] == pytest.approx(tokens.p[index], rel=1e-2)
        assert list(tokens.alternative_p[index]) == sorted(tokens.alternative_p[index], reverse=True)
        if piece:
            assert tokens.alternative_text[tokens.alternatives[index][0]] == piece
    # The record keeps them compactly and reads them back as they were.
    record = result.to_dict()
    size = len(json.dumps(record["tokens"], ensure_ascii=False))
    assert size / len(tokens) < 100, f"{size / len(tokens):.0f} bytes a token"
    assert ScoreResult.from_dict(json.loads(json.dumps(record))).tokens == tokens


def test_the_score_digits_keep_their_probabilities_and_sampling_records_the_token_drawn(engine, clean_clip):
    result = engine.score_to_result(clean_clip, PROMPT, ScoreOptions(do_sample=True, temperature=1.5, seed=3))
    tokens = result.tokens
    assert len(tokens) == result.timings["new_tokens"] and tokens.text == result.text
    assert all(0 < p <= 1 for p in tokens.p)
    # Each score digit is a token whose p is read off the same distribution as the digits' p(1..5):
    # over the whole vocabulary, so at most the digit's share among the five.
    parsed, starts = parse(result.text), tokens.offsets()
    for key, dim in result.scores.items():
        index = max(i for i, start in enumerate(starts) if start <= parsed.spans[key][0])
        assert tokens.pieces[index].strip() == str(dim.score)
        assert 0 < tokens.p[index] <= dim.probs[dim.score - 1] + 1e-3


def test_the_recorder_reads_the_chosen_token_one_step_later_and_the_entropy_of_the_step():
    recorder = StepRecorder([1, 2, 3, 4, 5])
    first = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]])
    second = torch.tensor([[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    recorder(torch.tensor([[9, 9]]), first)
    recorder(torch.tensor([[9, 9, 6]]), second)  # token 6 was chosen at the first step
    numbers = recorder.numbers(last_tokens=torch.tensor([0]))
    log_first, log_second = torch.log_softmax(first, -1)[0], torch.log_softmax(second, -1)[0]
    assert numbers["chosen"][:, 0].tolist() == pytest.approx([log_first[6].item(), log_second[0].item()])
    entropy = -(log_first.exp() * log_first).sum().item()
    assert numbers["entropy"][0, 0].item() == pytest.approx(entropy, rel=1e-5)
    assert numbers["top_ids"][0, 0].tolist() == [7, 6, 5, 4, 3]
    assert numbers["digits"].shape == (2, 1, 5)
    # Tokens masked out (-inf: top-k, a bad word) count for nothing, not for nan.
    masked = StepRecorder([1, 2, 3, 4, 5])
    masked(torch.tensor([[9]]), torch.tensor([[float("-inf")] * 6 + [0.0, 0.0]]))
    assert masked.numbers()["entropy"][0, 0].item() == pytest.approx(math.log(2))


def test_pieces_join_to_the_decoded_text_even_where_a_character_spans_tokens(engine):
    tokenizer = engine.backend().processor.tokenizer
    text = "Sharp frames, a café at dusk — 日本 ✓ and an emoji 🎈 at the end."
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces, decoded = token_pieces(tokenizer, ids)
    assert decoded == text and "".join(pieces) == text and len(pieces) == len(ids)
    assert "\ufffd" not in "".join(pieces)
    decoder = PieceDecoder(tokenizer)
    assert "".join(decoder.add(token) for token in ids) == text


def constructed() -> TokenConfidence:
    pieces = ["<think>", "The", " ball", " is", " red", ".", " It", " might", " be", " orange", ".", "</think>", " 4"]
    p = [1.0, 0.99, 0.98, 0.97, 0.95, 1.0, 0.9, 0.3, 0.6, 0.2, 0.99, 1.0, 0.8]
    return TokenConfidence.build(pieces, p, [0.1] * len(p), [[i, 99] for i in range(len(p))],
                                 [[q, 1 - q] for q in p], decode=lambda token: f"t{token}")


def test_the_least_certain_passage_is_the_hedged_sentence():
    tokens = constructed()
    text = tokens.text
    within = (text.index("The"), text.index("</think>"))
    passages = least_certain_passages(tokens, within=within)
    assert passages[0].text == "It might be orange."
    assert passages[0].weakest == "orange" and passages[0].weakest_p == 0.2
    assert passages[0].mean_surprise > passages[-1].mean_surprise


def test_rare_alternatives_are_left_out_and_a_cut_record_reads_as_none():
    tokens = TokenConfidence.build(["a"], [0.9999], [0.0], [[5, 6, 7]], [[0.9999, 0.00005, 0.00001]], decode=str)
    assert tokens.alternatives == ((5,),) and MIN_ALTERNATIVE_P > 0.00005
    data = tokens.to_dict()
    data["p"] = []
    assert TokenConfidence.from_dict(data) is None
    assert TokenConfidence.from_dict({"piece": "x"}) is None


def test_the_coloured_view_escapes_the_text_and_shades_the_unsure_tokens():
    tokens = TokenConfidence.build(["<img src=x onerror=alert(1)>", " maybe"], [0.99, 0.2], [0.0, 1.5],
                                   [[1, 2], [3, 4]], [[0.99, 0.01], [0.5, 0.2]],
                                   decode=lambda token: "<b>" if token == 3 else "x")
    page = confidence_html(ScoreResult("v.mp4", "p", "m", text=tokens.text, tokens=tokens))
    assert "<img" not in page and "&lt;img" in page
    assert "class='vs2-tok c4'" in page and "class='vs2-tok c0'" in page
    assert "&#x27;&lt;b&gt;&#x27;" in page  # an alternative's text is escaped inside its attribute
    assert math.isfinite(tokens.entropy[1])


def test_the_coloured_view_hides_the_tags_and_names_an_unsure_score_digit():
    """As the tokenizer writes it: "<think" then ">The" (the tag's end merged with the first word),
    ".</" and "think" and ">\\n\\n". The view shows no tag and "The" as a token of its own; and when
    the only unsure token is a score digit, "Where it was least sure" names its line."""
    pieces = ["<think", ">The", " ball", " is", " red", ".</", "think", ">\n\n", "(1", ")", " visual", " quality",
              ":", " 4"]
    p = [1.0, 0.99, 0.98, 0.97, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.6]
    tokens = TokenConfidence.build(pieces, p)
    page = confidence_html(ScoreResult("v.mp4", "p", "m", text=tokens.text, tokens=tokens))
    shown = re.sub(r"<[^>]+>", "", page.split("<div class='text'>")[1].split("<div class='vs2-least'>")[0])
    assert "think" not in shown and "&gt;" not in shown and "&lt;" not in shown
    assert re.search(r"class='vs2-tok c0'[^>]*>The</span>", page)
    assert "<pre class='answer'>" in page and "The ball is red." in shown
    least = page.split("<div class='vs2-least'>")[1]
    assert "Where it was least sure" in least and "(1) visual quality: 4" in least and "“4” (p 0.6)" in least
