"""Inits beyond the paper's (the component controls): `shuffled` (each pretrained tensor's entries
permuted) and `keep` (the named pretrained groups transplanted into the random backbone of the same seed).
Checked on the offline MiniLM against its pretrained state dict."""
from __future__ import annotations

import pytest
import torch

from fptlib.config import RunConfig, resolve
from fptlib.models import BackboneSpec, build_backbone
from fptlib.models.backbones import BackboneError


def _params(bb) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in bb.named_parameters()}


@pytest.fixture(scope="module")
def minilm():
    """(pretrained, random seed 0) MiniLM backbones' tensors, and the parameter groups."""
    pre = build_backbone(BackboneSpec("minilm", init="pretrained"), seed=0)
    rnd = build_backbone(BackboneSpec("minilm", init="random"), seed=0)
    return _params(pre), _params(rnd), pre.groups()


def test_a_shuffled_tensor_holds_the_same_values_in_another_order(minilm):
    pre, _, _ = minilm
    shuffled = _params(build_backbone(BackboneSpec("minilm", init="shuffled"), seed=0))
    assert shuffled.keys() == pre.keys()
    moved = 0
    for name, t in shuffled.items():
        assert torch.equal(t.reshape(-1).sort().values, pre[name].reshape(-1).sort().values), name
        if pre[name].unique().numel() > 1:
            assert not torch.equal(t, pre[name]), f"{name} kept its order"
            moved += 1
    assert moved > 50
    again = _params(build_backbone(BackboneSpec("minilm", init="shuffled"), seed=0))
    other = _params(build_backbone(BackboneSpec("minilm", init="shuffled"), seed=1))
    assert all(torch.equal(again[n], shuffled[n]) for n in shuffled)  # seeded
    assert any(not torch.equal(other[n], shuffled[n]) for n in shuffled)


@pytest.mark.parametrize("keep", [("attention", "layernorm", "positions"), ("feedforward", "layernorm", "positions"),
                                  ("attention",)])
def test_keep_transplants_exactly_the_named_pretrained_groups(minilm, keep):
    pre, rnd, groups = minilm
    got = _params(build_backbone(BackboneSpec("minilm", init="pretrained", keep=keep), seed=0))
    kept = [n for n in got if groups[n] in keep]
    redrawn = [n for n in got if groups[n] not in keep]
    assert kept and redrawn
    assert all(torch.equal(got[n], pre[n]) for n in kept)
    assert all(torch.equal(got[n], rnd[n]) for n in redrawn)  # the random arm's own tensors, same seed
    assert sum(not torch.equal(pre[n], rnd[n]) for n in redrawn) > len(redrawn) // 2


def test_keep_is_part_of_the_run_identity_and_refused_where_it_means_nothing(reliability):
    plain = resolve(RunConfig("bit-xor", scale="smoke"))
    kept = resolve(RunConfig("bit-xor", scale="smoke", keep="layernorm,attention"))
    assert kept.keep == ("layernorm", "attention") and kept.hash() != plain.hash()
    assert "__pretrained-keep-layernorm+attention__" in kept.run_id()
    assert "keep" not in plain.run_id() and plain.keep is None
    with pytest.raises(ValueError, match="needs init pretrained"):
        resolve(RunConfig("bit-xor", scale="smoke", init="random", keep="attention"))
    with pytest.raises(ValueError, match="name one or more of layernorm"):
        resolve(RunConfig("bit-xor", scale="smoke", keep="input"))
    with pytest.raises(BackboneError, match="does not have"):
        build_backbone(BackboneSpec("minilm", init="pretrained", keep=("recurrent",)), seed=0)
    reliability.bad_input("keep with init random; keep input; keep a group MiniLM lacks", kind="parameter")
