"""Objectives: built-in scorers on texts with known answers, spec parsing, the n x m matrix, errors."""

from __future__ import annotations

import pytest
import torch

from hoe.errors import ConfigError
from hoe.objectives import OBJECTIVES, ObjectiveContext, build_objective, build_objectives, score_matrix
from hoe.objectives.base import split_name

from tiny_lm import char_tokenizer, save_tiny_causal_lm, save_tiny_classifier


def test_positivity_orders_clear_sentences():
    obj = build_objective("positivity")
    s = obj.score(["x", "x", "x"], ["I love this, it is wonderful!", "I hate this, it is awful.", "The box."])
    assert s[0] > 0.5 and s[1] < -0.5 and s[2] == 0.0  # compound score; no lexicon word -> 0


def test_relevance_prefers_on_topic_response():
    obj = build_objective("relevance")
    prompt = "What is your favorite food?"
    s = obj.score(
        [prompt] * 3, ["I love pizza, it is my favorite food.", "The train leaves at noon.", prompt]
    )
    assert s[0] > s[1] + 0.3
    assert s[2] == pytest.approx(1.0, abs=1e-5)  # cosine of a unit vector with itself


def test_brevity_at_zero_and_at_max_tokens():
    obj = build_objective("brevity:4")
    s = obj.score(["p"] * 4, ["", "one two", "a b c d", "a b c d e f"])
    assert s.tolist() == [1.0, 0.5, 0.0, 0.0]  # 1 - count / 4, clipped to [0, 1]
    assert build_objective("brevity").score(["p"], ["Hi, you!"]).item() == pytest.approx(1 - 4 / 48)


def test_brevity_counts_policy_tokens():
    context = ObjectiveContext(tokenizer=char_tokenizer(), max_new_tokens=8)
    assert build_objective("brevity", context).score(["p"], ["abcd"]).item() == 0.5  # 4 chars = 4 tokens


def test_unknown_objective_lists_registered():
    with pytest.raises(
        ConfigError, match=r"unknown objective 'helpfulness'.*brevity, hf, judge, positivity, py, relevance"
    ):
        build_objective("helpfulness")
    assert {"relevance", "positivity", "brevity", "hf", "judge", "py"} <= set(OBJECTIVES)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="brevity:N"):
        build_objective("brevity:zero")
    with pytest.raises(ConfigError, match="judge:MODEL:QUESTION"):
        build_objective("judge:only-a-model")
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz'"):
        build_objective("py:no_such_module_xyz:f")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        build_objective("py:tiny_lm:nope")


def test_names_and_spec_split():
    assert split_name("helpful=hf:a/b@1") == ("helpful", "hf:a/b@1")
    assert split_name("judge:m:Is 1+1=2?") == (None, "judge:m:Is 1+1=2?")
    with pytest.raises(ConfigError, match="given twice"):
        build_objectives(["brevity", "brevity:10"])
    assert [o.name for o in build_objectives(["brevity", "short=brevity:10"])] == ["brevity", "short"]


def test_dotted_path_objective_and_matrix():
    objs = build_objectives(["py:tiny_lm:count_a", "brevity:4"])
    assert objs[0].name == "count_a"
    m = score_matrix(objs, ["p", "q"], ["aa b", "bbbb"])
    assert m.shape == (2, 2)  # n x m: rows are pairs, columns objectives
    assert torch.equal(m, torch.tensor([[0.5, 0.5], [0.0, 0.75]]))


def test_wrong_shape_from_user_function():
    with pytest.raises(ConfigError, match=r"'wrong_length' returned shape \(1,\) for 2 pairs"):
        score_matrix([build_objective("py:tiny_lm:wrong_length")], ["a", "b"], ["c", "d"])


def test_reward_model_index_error(tmp_path):
    folder = save_tiny_classifier(tmp_path / "rm", num_labels=2)
    with pytest.raises(ConfigError, match=r"has 2 output\(s\)\. Pass an index from 0 to 1"):
        build_objective(f"hf:{folder}@2")
    with pytest.raises(ConfigError, match="output index"):
        build_objective(f"hf:{folder}@x")


def test_reward_model_scores_match_unbatched(tmp_path):
    """Right padding in a batch must not change a pair's score; the input is "prompt\\n\\nresponse"."""
    from transformers import AutoModelForSequenceClassification

    folder = save_tiny_classifier(tmp_path / "rm", num_labels=2)
    obj = build_objective(f"hf:{folder}@1")
    assert obj.name == "rm@1"
    prompts, responses = ["hello", "a much longer prompt here"], ["hi there", "ok"]
    got = obj.score(prompts, responses)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = char_tokenizer(chat=False)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        with torch.no_grad():
            want = model(**tok(f"{p}\n\n{r}", return_tensors="pt")).logits[0, 1]
        assert got[i].item() == pytest.approx(want.item(), abs=1e-5)


def test_judge_is_log_odds_and_batch_invariant(tmp_path):
    """s = log p(yes) - log p(no) at the next token, the same alone and in a left-padded batch."""
    folder = save_tiny_causal_lm(tmp_path / "lm")
    obj = build_objective(f"funny=judge:{folder}:Is this funny?")
    assert obj.name == "funny" and obj.chat
    assert obj.yes_ids == sorted({obj.tokenizer("y")["input_ids"][0], obj.tokenizer("Y")["input_ids"][0]})
    batch = obj.score(["a", "a longer prompt"], ["b", "c"])
    single = torch.cat([obj.score(["a"], ["b"]), obj.score(["a longer prompt"], ["c"])])
    assert torch.allclose(batch, single, atol=1e-5)
    text = obj.render("a", "b")
    with torch.no_grad():
        logp = obj.model(**obj.tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
        logp = logp.log_softmax(-1)
    want = logp[obj.yes_ids].logsumexp(-1) - logp[obj.no_ids].logsumexp(-1)
    assert single[0].item() == pytest.approx(want.item(), abs=1e-5)


def test_specs_are_matched_to_the_bundles_objectives_by_name_or_kind():
    from hoe.objectives.base import specs_for

    names = ["relevance", "polite"]
    assert specs_for(names, None) == names  # the names as built-in kinds
    assert specs_for(names, ["polite=py:m:f", "relevance"]) == ["relevance", "polite=py:m:f"]  # bundle order
    with pytest.raises(
        ConfigError, match=r"names the objectives \['relevance', 'py'\].*e\.g\. polite=py:m:f"
    ):
        specs_for(names, ["relevance", "py:m:f"])  # matched by text: an unnamed py: spec is named "py"
