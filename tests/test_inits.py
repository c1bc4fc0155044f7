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


# ---- self-pretrained: a source run on the task's own training inputs, masked -------------------------------

class _TrainOnly(dict):
    """A dataset task's splits, where any read of validation or test fails the test."""

    def __getitem__(self, split):
        assert split == "train", f"self-pretraining read the {split} split"
        return super().__getitem__(split)


def _guard(task):
    """`task` with every way to its validation and test inputs closed: its split dict (datasets), its fixed
    evaluation sets (generated tasks), its evaluation batches and its data hash (which hashes val and test)."""
    from fptlib.data.base import FixedEvalSets
    if isinstance(getattr(task, "_data", None), dict):
        task._data = _TrainOnly(task._data)
    if isinstance(task, FixedEvalSets):
        fixed = task._fixed
        task._fixed = lambda split: fixed(split) if split == "train" else pytest.fail(f"read the {split} set")
    batches = task.eval_batches
    task.eval_batches = (lambda split, *a, **k: batches(split, *a, **k) if split == "train"
                         else pytest.fail(f"evaluated on {split}"))
    task.data_hash = lambda: pytest.fail("hashed the validation and test data")
    return task


@pytest.mark.parametrize("task", ["bit-xor", "listops", "mnist"])
def test_self_pretraining_reads_the_training_split_alone(task, tmp_path, monkeypatch):
    # The whole source run (batches, every evaluation, the final scores and result.json) through the real loop,
    # with the wrapped task's validation and test inputs made unreadable.
    import importlib

    from fptlib.data import make_task
    from fptlib.training import train
    build_module = importlib.import_module("fptlib.training.build")  # the module, not the function it exports
    monkeypatch.setattr(build_module, "make_task", lambda *a, **k: _guard(make_task(*a, **k)))
    cfg = resolve(RunConfig(task, scale="smoke", init="random", train=("full",), objective="masked", steps=3,
                            eval_every=2))
    res = train(cfg, tmp_path / "run", progress=False)
    assert res["steps"] == 3 and 0 <= res["test_accuracy"] <= 1
    assert res["task_info"]["name"] == f"{task}+masked" and "training inputs only" in res["task_info"]["source"]


@pytest.mark.parametrize("task", ["bit-xor", "listops", "mnist"])
def test_masking_hides_a_seventh_of_the_real_tokens_and_asks_for_them_back(task):
    from fptlib.data import IGNORE, MaskedInputs, make_task
    from fptlib.data.masked import MASK_RATE
    cfg = resolve(RunConfig(task, scale="smoke"))
    inner = make_task(task, seed=0, **cfg.task_options)
    m = MaskedInputs(inner)
    raw, b = inner.train_batch(5, 8), m.train_batch(5, 8)
    n, t = raw["x"].shape[:2]
    real = raw["attention_mask"].bool() if "attention_mask" in raw else torch.ones(n, t, dtype=torch.bool)
    if m.input_kind == "tokens":
        masked = b["x"] == inner.d_in  # the new mask id
        assert torch.equal(b["x"][~masked], raw["x"][~masked])
        assert torch.equal(b["y"][masked], raw["x"][masked]) and (b["y"][~masked] == IGNORE).all()
    else:
        masked = b["x"][..., -1] == 1  # the flag feature
        assert (b["x"][masked][:, :-1] == 0).all() and torch.equal(b["x"][~masked][:, :-1], raw["x"][~masked])
        y = b["y"].reshape(n, t, inner.d_in)
        assert torch.equal(y[masked], (raw["x"][masked] > m._threshold).long()) and (y[~masked] == IGNORE).all()
    assert not (masked & ~real).any()  # padding is never masked
    want = (real.sum(1).float() * MASK_RATE).round().clamp(min=1)
    assert torch.equal(masked.sum(1).float(), want)
    again, other = m.train_batch(5, 8), m.train_batch(6, 8)
    assert torch.equal(again["x"], b["x"]) and not torch.equal(other["x"], b["x"])  # a function of (seed, step)
    # what `fpt plan` sizes a source run by, without its data, is the shape it trains on (the length aside:
    # ListOps's data decides it)
    from fptlib.data import planned_shape
    planned = planned_shape(task, cfg.task_options, "masked")
    assert planned[1:3] == m.shape()[1:3] and planned[4:] == m.shape()[4:]


def test_self_pretrained_init_freezes_the_source_runs_backbone(tmp_path, reliability):
    # One source run per task at seed 0, shared by every seed and rate; the downstream backbone is its weights.
    from safetensors.torch import load_file

    from fptlib.training import RunDir, build_for_run, source_config
    cfg = resolve(RunConfig("bit-xor", scale="smoke", init="self-pretrained", seed=1, lr=3e-4))
    src = source_config(cfg)
    assert (src.seed, src.objective, src.init, src.steps, src.lr) == (0, "masked", "random", 4, 1e-4)
    assert set(src.train) >= {"attention", "feedforward", "input", "output"}  # every parameter trains
    assert source_config(resolve(RunConfig("bit-xor", scale="smoke", init="self-pretrained", seed=2))) == src
    assert "bit-xor+masked__" in src.run_id()
    model, _ = build_for_run(cfg)
    saved = load_file(RunDir.of(src).backbone_file)
    got = model.backbone.state_dict()
    assert saved.keys() == got.keys()
    assert all(torch.equal(got[k], saved[k]) for k in saved)
    assert model.init_source["objective"] == "masked" and model.init_source["run_id"] == src.run_id()
    other = resolve(RunConfig("bit-xor", scale="smoke", init="self-pretrained", seed=1, lr=3e-4, pretrain_steps=5))
    assert other.hash() != cfg.hash() and source_config(other).steps == 5
    with pytest.raises(ValueError, match="needs init self-pretrained"):
        resolve(RunConfig("bit-xor", scale="smoke", init="random", pretrain_steps=5))
    with pytest.raises(ValueError, match="unknown objective"):
        resolve(RunConfig("bit-xor", scale="smoke", objective="causal"))
    reliability.bad_input("pretrain_steps without self-pretrained init; an unknown objective", kind="parameter")


# ---- the no-transformer control ---------------------------------------------------------------------------

def test_the_pool_control_mixes_tokens_only_by_their_average():
    from fptlib.models.pool import PoolBackbone
    torch.manual_seed(0)
    bb = PoolBackbone(16)
    x = torch.randn(3, 7, 16)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    h = bb(x, mask)
    assert torch.allclose(h, h[:, :1].expand_as(h))  # every position reads the same vector
    each = bb.ln(x + bb.wpe.weight[:7])
    assert torch.allclose(h[0, 0], each[0].mean(0), atol=1e-6)
    assert torch.allclose(h[1, 0], each[1, :5].mean(0), atol=1e-6)  # padding is left out
    y = x.clone()
    y[1, 5:] = 100.0  # what the padding holds changes nothing
    assert torch.allclose(bb(y, mask)[1], h[1])
    assert set(bb.groups().values()) == {"positions", "layernorm"}
    assert {n for n, _ in bb.named_parameters()} == set(bb.groups())


def test_a_pool_run_trains_everything_it_has_and_refuses_pretrained_weights(tmp_path, reliability):
    from fptlib.training import train
    cfg = resolve(RunConfig("mnist", scale="smoke", backbone="pool", init="random", steps=3))
    res = train(cfg, tmp_path / "run", progress=False)
    assert res["trainable_params"] == res["total_params"] and res["frozen_tensors"] == 0
    assert "__pool__random__" in cfg.run_id()
    with pytest.raises(BackboneError, match="no-transformer .pool. control has no pretrained weights"):
        build_backbone(BackboneSpec("pool", init="pretrained"), seed=0)
    reliability.bad_input("the pool control with init pretrained", kind="parameter")


def test_only_the_masked_tokens_are_scored():
    # Bit XOR at smoke: 64 held-back examples of 10 one-bit tokens, 2 masked each (15 %, rounded): 128 decisions
    from fptlib.data import MaskedInputs, make_task
    from fptlib.models import FPT
    from fptlib.training import evaluate
    cfg = resolve(RunConfig("bit-xor", scale="smoke"))
    task = MaskedInputs(make_task("bit-xor", seed=0, **cfg.task_options))
    bb = build_backbone(BackboneSpec("minilm", init="random", n_layers=1), seed=0)
    model = FPT(bb, input_kind=task.input_kind, d_in=task.d_in, n_out_tokens=task.n_out_tokens, out_dim=task.out_dim)
    got = evaluate(model, task, "val", 16, "cpu")
    assert task.split_size("val") == 64 and got["decisions"] == 64 * 2
    masked = sum(int((b["y"] != -100).sum()) for b in task.eval_batches("val", 16))
    assert masked == got["decisions"] and 0 <= got["accuracy"] <= 1
