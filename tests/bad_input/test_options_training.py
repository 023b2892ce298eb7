"""Bad numbers and options of `train-expert`: refused with exit 2 naming every bad flag at once, before
anything is written; an existing expert stays byte-identical."""

from __future__ import annotations

import pytest

from bad_input.helpers import assert_refused, cli, snapshot
from tiny_lm import save_tiny_causal_lm


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("train") / "lm")


def train(lm, out, *extra):
    """A valid command line; ``extra`` comes last, and a repeated option's last value wins."""
    args = ["train-expert", "--base", lm, "--objective", "brevity", "--steps", 1, "--batch-prompts", 2]
    return [*args, "--samples-per-prompt", 2, "--max-new-tokens", 4, "--no-progress", "--out", out, *extra]


@pytest.mark.parametrize(
    ("extra", "flags"),
    [
        (["--lr", "inf"], ["--lr: got inf"]),
        (["--lr", "nan", "--steps", "0"], ["--lr: got nan", "--steps: got 0"]),  # all reported together
        (["--kl-coef", "-1"], ["--kl-coef: got -1"]),
        (["--samples-per-prompt", "1"], ["--samples-per-prompt: got 1"]),
        (["--temperature", "inf"], ["--temperature: got inf"]),
        (["--dtype", "fp8"], ["--dtype: got 'fp8'"]),
        (["--resume", "--overwrite"], ["--resume: conflicts with overwrite"]),
        (["--targets", "nosuch_proj"], ["--targets: ['nosuch_proj'] name no linear module", "q_proj"]),
        (["--prompts", "missing.jsonl"], ["--prompts"]),
        (["--objective", "nope"], ["--objective"]),
        (["--device", "gpu"], ["--device"]),
    ],
)
def test_refused_before_anything_is_written(lm, tmp_path, capsys, extra, flags):
    out = tmp_path / "expert"
    (out / "adapter_model.safetensors").parent.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"the previous expert")
    before = snapshot(tmp_path)
    code, err = cli(capsys, *train(lm, out, "--overwrite", *extra))
    assert_refused(code, err, flags[0])
    assert all(f in err for f in flags), err
    assert snapshot(tmp_path) == before


def test_router_minibatches_follow_a_small_batch():
    """Issue 24, item 11: the default of 4 minibatches refused --batch-size 2; it now follows the batch."""
    from hoe.training.router import RouterConfig

    assert RouterConfig(model="b", anchor="0.5,0.5", out="o", batch_size=2).minibatches == 2
    assert RouterConfig(model="b", anchor="0.5,0.5", out="o").minibatches == 4  # the authors' default
    with pytest.raises(Exception, match="^minibatches: got 3"):
        RouterConfig(model="b", anchor="0.5,0.5", out="o", batch_size=2, minibatches=3)
