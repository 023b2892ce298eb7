"""Objectives: built-in scorers on texts with known answers, spec parsing, the n x m matrix, errors."""

from __future__ import annotations

import pytest
import torch

from hoe.errors import CheckpointError, ConfigError
from hoe.objectives import OBJECTIVES, ObjectiveContext, build_objective, build_objectives, score_matrix
from hoe.objectives.base import split_name

from tiny_lm import char_tokenizer, save_tiny_causal_lm, save_tiny_classifier, save_tiny_score_model


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
        ConfigError,
        match=r"unknown objective 'helpfulness'.*brevity, hf, judge, neg, positivity, py, relevance, score",
    ):
        build_objective("helpfulness")
    assert {"relevance", "positivity", "brevity", "hf", "judge", "neg", "py", "score"} <= set(OBJECTIVES)


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


def _logit(model, tok, *texts, index=0):
    with torch.no_grad():
        return model(**tok(*texts, return_tensors="pt")).logits[0, index].item()


def test_reward_model_templates_render_by_name_and_as_text_pairs(tmp_path):
    """``#hh`` is the HH-RLHF format, ``#pair`` a tokenizer text pair, ``#pair-reversed`` the pair swapped."""
    from transformers import AutoModelForSequenceClassification

    folder = save_tiny_classifier(tmp_path / "rm", num_labels=2)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = char_tokenizer(chat=False)
    prompts, responses = ["hello", "a longer prompt"], ["hi there", "ok"]
    hh = build_objective(f"hf:{folder}@1#hh").score(prompts, responses)
    pair = build_objective(f"hf:{folder}#pair").score(prompts, responses)
    swapped = build_objective(f"hf:{folder}#pair-reversed").score(prompts, responses)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        wrapped = f"\n\nHuman: {p}\n\nAssistant: {r}"
        assert hh[i].item() == pytest.approx(_logit(model, tok, wrapped, index=1), abs=1e-5)
        assert pair[i].item() == pytest.approx(_logit(model, tok, p, r), abs=1e-5)
        assert swapped[i].item() == pytest.approx(_logit(model, tok, r, p), abs=1e-5)
    assert pair[0] != swapped[0]
    with pytest.raises(
        ConfigError, match=r"unknown template 'hhh'.*Templates: beaver, concat, gpt2-summary, hh"
    ):
        build_objective(f"hf:{folder}@1#hhh")


def test_the_templates_render_the_papers_reward_model_inputs():
    """Each named template on a RiC-format prompt gives what the authors' code feeds that reward model."""
    from hoe.objectives.reward_model import TEMPLATES

    hh, post = (
        "\n\nHuman: Hi? \n\nAssistant:",
        "### Instruction: Sum up. ### Input: A long post. ### Response: ",
    )
    assert TEMPLATES["pair"](hh, "Hello.") == (hh, "Hello.")
    assert TEMPLATES["response"](hh, "Hello.") == "Hello."
    assert TEMPLATES["beaver"](hh, "Hello.") == "BEGINNING OF CONVERSATION: USER: Hi?  ASSISTANT:Hello."
    assert TEMPLATES["hh"]("Hi?", "Hello.") == "\n\nHuman: Hi?\n\nAssistant: Hello."
    assert TEMPLATES["summary-post"](post, "Short.") == ("Short.", "A long post.")
    assert TEMPLATES["gpt2-summary"](post, "Short.") == "Short. <|endoftext|> A long post."


def test_specs_are_checked_without_loading_anything():
    from hoe.objectives.base import check_spec

    for ok in ["brevity:4", "neg:positivity", "cost=neg:score:no/such-model@0#beaver", "hf:no/such#pair",
               "judge:no/such:Is it kind?", "py:tiny_lm:count_a"]:  # fmt: skip
        check_spec(ok)  # hub ids that do not exist here: nothing is loaded
    for bad, match in [("brevity:0", "token budget"), ("neg:", "neg:SPEC"), ("hf:x#nope", "unknown template"),
                       ("score:x@y", "output index"), ("judge:x", "lacks a model"), ("py:tiny_lm:nope", "no function"),
                       ("cost=neg:nothing", "unknown objective 'nothing'")]:  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            check_spec(bad)


def test_neg_negates_any_objective_and_names_itself():
    pos = build_objective("positivity")
    texts = ["I love it!", "I hate it."]
    assert build_objective("neg:positivity").name == "neg-positivity"
    got = build_objective("cost=neg:positivity")
    assert got.name == "cost"
    assert got.score(["x", "x"], texts).tolist() == (-pos.score(["x", "x"], texts)).tolist()
    with pytest.raises(ConfigError, match="neg:SPEC"):
        build_objective("neg")
    with pytest.raises(ConfigError, match="unknown objective 'nothing'"):
        build_objective("neg:nothing")


def test_a_safe_rlhf_score_model_scores_the_last_token_of_each_pair(tmp_path):
    """``score:`` loads the backbone and the ``score_head`` of a safe-rlhf checkpoint; the score is the head at
    the last real token (right padding in a batch changes nothing), on the safe-rlhf conversation format."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    folder = save_tiny_score_model(tmp_path / "beaver", score_dim=2)
    obj = build_objective(f"score:{folder}@1#beaver")
    assert obj.name == "beaver@1"
    prompts = ["\n\nHuman: hello \n\nAssistant:", "\n\nHuman: a much longer prompt here \n\nAssistant:"]
    got = obj.score(prompts, ["hi there", "ok"])
    backbone = AutoModel.from_pretrained(folder).eval()
    head = load_file(str(folder / "model.safetensors"))["score_head.weight"]  # (2, hidden)
    tok = char_tokenizer(chat=False)
    texts = [
        "BEGINNING OF CONVERSATION: USER: hello  ASSISTANT:hi there",
        "BEGINNING OF CONVERSATION: USER: a much longer prompt here  ASSISTANT:ok",
    ]
    for i, text in enumerate(texts):
        with torch.no_grad():
            want = backbone(**tok(text, return_tensors="pt")).last_hidden_state[0, -1] @ head[1]
        assert got[i].item() == pytest.approx(want.item(), abs=1e-5)
    with pytest.raises(ConfigError, match=r"has 2 output\(s\)"):
        build_objective(f"score:{folder}@2")
    with pytest.raises(CheckpointError, match="no score_head.weight"):
        build_objective(f"score:{save_tiny_classifier(tmp_path / 'plain')}")


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
