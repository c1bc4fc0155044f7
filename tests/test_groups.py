"""Parameter groups come from module structure; counts match the paper's arithmetic."""
import json
import subprocess

import pytest
import torch
from conftest import SHORT_WAIT
from torch import nn

from fptlib.groups import TRAINABLE_GROUPS, parse_groups
from fptlib.models import FPT, BackboneError, BackboneSpec, build_backbone


def make(name, init="random", task_dim=16, out_dim=10, n_layers=None, **kw):
    bb = build_backbone(BackboneSpec(name=name, init=init, n_layers=n_layers, **kw), seed=0)
    return FPT(bb, input_kind="linear", d_in=task_dim, n_out_tokens=1, out_dim=out_dim)


def test_gpt2_small_counts_match_the_paper():
    m = make("gpt2")  # GPT2Config() is gpt2-small's shape; random init needs no download
    m.set_trainable(["input", "output", "layernorm", "positions"])
    rep = m.param_report()["trainable_params_by_group"]
    assert rep["input"] == 16 * 768 + 768 == 13_056
    assert rep["output"] == 768 * 10 + 10 == 7_690
    assert rep["layernorm"] == 25 * 2 * 768 == 38_400  # 24 block norms and ln_f
    assert rep["positions"] == 1024 * 768
    assert rep["attention"] == rep["feedforward"] == 0
    total = m.param_report()["total_params_by_group"]
    assert total["unused"] == 50257 * 768  # wte, bypassed by inputs_embeds
    assert total["attention"] == 12 * (768 * 2304 + 2304 + 768 * 768 + 768)
    assert total["feedforward"] == 12 * (768 * 3072 + 3072 + 3072 * 768 + 768)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bert", "minilm", "lstm"])
def test_every_parameter_has_exactly_one_group(name):
    m = make(name, init="pretrained" if name == "minilm" else "random", lstm_width=32)
    owner = m.groups()
    assert set(owner) == {n for n, _ in m.named_parameters()}
    assert set(owner.values()) <= set(TRAINABLE_GROUPS) | {"unused"}


def test_minilm_groups_from_structure():
    m = make("minilm", init="pretrained")
    total = m.param_report()["total_params_by_group"]
    assert total["layernorm"] == (1 + 2 * 6) * 2 * 384  # embedding LN + 2 per block
    assert total["positions"] == 512 * 384
    assert total["attention"] == 6 * (4 * (384 * 384 + 384))  # q, k, v, output dense
    assert total["feedforward"] == 6 * (384 * 1536 + 1536 + 1536 * 384 + 384)
    assert total["token_type"] == 2 * 384
    assert total["unused"] == 30522 * 384


def test_full_trains_everything_but_the_unused_token_table():
    m = make("tiny-gpt2")
    m.set_trainable("full")
    for n, p in m.named_parameters():
        assert p.requires_grad == (n != "backbone.model.wte.weight"), n


def test_unclaimed_parameter_is_an_error_not_a_silent_freeze(reliability):
    m = make("tiny-gpt2")
    m.backbone.model.h[0].extra = nn.Linear(2, 2)  # a module no rule knows
    with pytest.raises(BackboneError, match="belongs to no group"):
        m.groups()
    reliability.bad_input("a module no group rule knows", kind="parameter")


def test_unknown_group_names_the_choices(reliability):
    with pytest.raises(ValueError, match="choose from .*layernorm"):
        parse_groups("input,attn")
    reliability.bad_input("group 'attn'", kind="parameter")


def test_lstm_groups():
    m = make("lstm", lstm_width=32)
    m.set_trainable(["input", "output", "layernorm"])
    rep = m.param_report()
    assert rep["trainable_params_by_group"]["recurrent"] == 0
    assert rep["trainable_params_by_group"]["layernorm"] == 3 * (2 * 128 * 2 + 2 * 32)
    assert rep["total_params_by_group"]["recurrent"] == 3 * (32 * 128 + 128 + 32 * 128)


def test_cli_reports_groups_for_gpt2_random_smoke(fpt_cmd, tmp_path):
    """The issue's check: an explicit --backbone wins over the smoke scale's default."""
    out = subprocess.run(fpt_cmd + ["train", "mnist", "--backbone", "gpt2", "--init", "random", "--scale",
                                    "smoke", "--steps", "1", "--out", str(tmp_path / "run"), "--no-progress"],
                         capture_output=True, text=True, check=True, timeout=SHORT_WAIT)
    res = json.loads(out.stdout[:out.stdout.rindex("}") + 1])
    g = res["trainable_params_by_group"]
    assert (g["input"], g["output"], g["layernorm"], g["attention"], g["feedforward"]) == \
        (13_056, 7_690, 38_400, 0, 0)
    assert res["backbone"] == "gpt2" and res["frozen_unchanged"] is True
    assert torch.isfinite(torch.tensor(res["test_accuracy"]))
