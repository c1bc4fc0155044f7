"""Table 2's ViT row: an image-pretrained ViT-B/16 as the frozen backbone, its blocks and final norm,
with a new zero-initialised 1,024-position table; groups from its module structure."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import SHORT_WAIT

from fptlib.models import FPT, BackboneError, BackboneSpec, build_backbone, weights_missing
from fptlib.study.studies import BitInit


def _report(name, d_in=16, out_dim=10):
    bb = build_backbone(BackboneSpec(name, init="random"), 0)
    return bb, FPT(bb, input_kind="linear", d_in=d_in, n_out_tokens=1, out_dim=out_dim).param_report()


def test_vit_base_groups_match_the_arithmetic():
    bb, r = _report("vit-base")
    w, layers, ffn = 768, 12, 3072
    assert (bb.width, bb.max_positions, len(bb.blocks())) == (w, 1024, layers)
    total = r["total_params_by_group"]
    assert total["attention"] == layers * 4 * (w * w + w)          # q, k, v, o with biases
    assert total["feedforward"] == layers * (w * ffn + ffn + ffn * w + w)
    assert total["layernorm"] == layers * 2 * 2 * w + 2 * w         # two per block and the final norm
    assert total["positions"] == 1024 * w                          # the new table, ViT's own is dropped
    assert total["unused"] == 0                                    # no patch embedding, class token or pooler
    assert r["trainable_params_by_group"] == {"input": 16 * w + w, "output": w * 10 + 10, "layernorm": 38400,
                                              "positions": 786432, "attention": 0, "feedforward": 0,
                                              "recurrent": 0, "token_type": 0}


def test_the_new_position_table_starts_at_zero_and_trains():
    bb, _ = _report("tiny-vit")
    assert torch.count_nonzero(bb.positions) == 0
    model = FPT(bb, input_kind="linear", d_in=4, n_out_tokens=1, out_dim=2)
    x = torch.randn(3, 10, 4)
    model(x).sum().backward()
    assert bb.positions.grad[:, :10].abs().sum() > 0 and bb.positions.grad[:, 10:].abs().sum() == 0
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".attention." in n or ".mlp." in n)


def test_padding_is_never_attended_to():
    bb, _ = _report("tiny-vit")
    bb.eval()
    x = torch.randn(1, 8, bb.width)
    mask = torch.tensor([[1] * 5 + [0] * 3])
    a = bb(x, mask)[:, :5]
    b = bb(torch.cat([x[:, :5], torch.randn(1, 3, bb.width)], 1), mask)[:, :5]
    assert torch.allclose(a, b, atol=1e-6)


def test_truncation_and_attention_dropout():
    bb = build_backbone(BackboneSpec("tiny-vit", init="random", n_layers=1, attention_dropout=0.0), 0)
    assert len(bb.blocks()) == 1 and bb.blocks()[0].attention.attention_dropout == 0.0


def test_attention_maps_are_refused_with_what_to_use(reliability):
    bb, _ = _report("tiny-vit")
    with pytest.raises(BackboneError, match="gpt2, bert or t5"):
        bb(torch.randn(1, 4, bb.width), output_attentions=True)
    reliability.bad_input("attention maps of a ViT", kind="parameter")


def test_fpt_train_vit_one_step(fpt_cmd, tmp_path):
    import subprocess
    r = subprocess.run(fpt_cmd + ["train", "mnist", "--backbone", "tiny-vit", "--init", "random", "--steps", "1",
                                  "--scale", "smoke", "--out", str(tmp_path / "run"), "--no-progress"],
                       capture_output=True, text=True, timeout=SHORT_WAIT)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "run" / "result.json").read_text())
    assert res["frozen_unchanged"] and res["trainable_params_by_group"]["positions"] == 1024 * 32


def test_offline_the_vit_row_says_its_weights_are_missing():
    why = weights_missing("vit-base")
    assert why and "google/vit-base-patch16-224" in why
    study = BitInit(scale="smoke", tasks=["bit-xor"])
    assert "ViT" in study.rows and set(study.missing_weights()) == {"ViT"}
    assert all(r.row != "ViT" for r in study.runs())
    import pandas as pd
    summary = study.summary(pd.DataFrame(columns=["row", "task", "seed", "backbone", "steps", "scale",
                                                  "test_accuracy"]))
    vit = summary[summary.row == "ViT"]
    assert len(vit) == 1 and vit.note.iloc[0].startswith("weights not available offline")
    md = study.markdown(summary)
    assert "| ViT | weights not available offline" in md and "- ViT: weights not available offline" in md
