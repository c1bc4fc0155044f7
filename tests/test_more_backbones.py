"""T5-encoder and Longformer backbones (paper Table 17): groups, freezing, loading, position limits."""
import pytest
import torch
from transformers import LongformerConfig, LongformerModel, T5Config, T5EncoderModel, T5ForConditionalGeneration

from fptlib import RunConfig, resolve, train
from fptlib.groups import FPT_GROUPS, TRAINABLE_GROUPS
from fptlib.models import FPT
from fptlib.models.backbones import KNOWN_BACKBONES, BackboneError, BackboneSpec, build_backbone, set_attention_dropout
from fptlib.training import RunError, build

TINY = ("tiny-t5", "tiny-longformer")


def make(name, init="random", d_in=3, out_dim=4, n_out=1, **kw):
    bb = build_backbone(BackboneSpec(name=name, init=init, **kw), seed=0)
    return FPT(bb, input_kind="linear", d_in=d_in, n_out_tokens=n_out, out_dim=out_dim)


def test_new_names_are_listed():
    for name in ("t5-small", "t5-base", "tiny-t5", "allenai/longformer-base-4096", "tiny-longformer"):
        assert name in KNOWN_BACKBONES


@pytest.mark.parametrize("name", TINY)
def test_every_parameter_has_exactly_one_group(name):
    m = make(name)
    owner = m.groups()
    names = [n for n, _ in m.named_parameters()]
    assert len(names) == len(set(names)) and set(owner) == set(names)
    assert set(owner.values()) <= set(TRAINABLE_GROUPS) | {"unused"}


def test_tiny_t5_group_counts():
    m = make("tiny-t5")
    d, d_ff, heads, d_kv, buckets, vocab, blocks = 32, 64, 2, 16, 32, 32128, 2
    assert (m.backbone.family, m.backbone.width, len(m.backbone.blocks())) == ("t5", d, blocks)
    total = m.param_report()["total_params_by_group"]
    assert total["positions"] == buckets * heads == 64  # the relative attention bias of block 0
    assert total["layernorm"] == (2 * blocks + 1) * d == 160  # 2 T5LayerNorms per block + final; no bias
    assert total["attention"] == blocks * 4 * d * heads * d_kv  # q, k, v, o without biases
    assert total["feedforward"] == blocks * 2 * d * d_ff  # wi, wo without biases
    assert total["unused"] == vocab * d  # `shared`; its alias encoder.embed_tokens is dropped
    assert m.backbone.model.encoder.embed_tokens is None
    assert total["token_type"] == total["recurrent"] == 0
    owner = m.groups()
    assert owner["backbone.model.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] == "positions"
    assert owner["backbone.model.encoder.final_layer_norm.weight"] == "layernorm"
    assert owner["backbone.model.encoder.block.1.layer.1.layer_norm.weight"] == "layernorm"
    assert owner["backbone.model.encoder.block.1.layer.1.DenseReluDense.wi.weight"] == "feedforward"
    rep = m.param_report()["trainable_params_by_group"]  # the FPT default
    assert rep["positions"] == 64 and rep["layernorm"] == 160 and rep["attention"] == rep["feedforward"] == 0


def test_tiny_longformer_group_counts():
    m = make("tiny-longformer")
    h, inter, layers, mpe, vocab = 32, 64, 2, 258, 50265
    bb = m.backbone
    assert (bb.family, bb.width, len(bb.blocks())) == ("longformer", h, layers)
    total = m.param_report()["total_params_by_group"]
    assert total["positions"] == mpe * h == 8256
    assert total["layernorm"] == (1 + 2 * layers) * 2 * h == 320  # embedding LN + 2 per layer
    # local q, k, v, the global q, k, v and the attention output dense
    assert total["attention"] == layers * 7 * (h * h + h)
    assert total["feedforward"] == layers * (h * inter + inter + inter * h + h)
    assert total["token_type"] == 1 * h  # longformer-base-4096 has one token type
    assert total["unused"] == vocab * h


def test_longformer_max_positions_are_the_usable_table_rounded_to_the_window():
    bb = build_backbone(BackboneSpec("tiny-longformer", init="random"), seed=0).eval()
    assert bb.max_positions == 256  # 258 - 2 (RoBERTa's padding offset), a multiple of the window 8
    with torch.no_grad():
        assert bb(torch.randn(1, 256, 32)).shape == (1, 256, 32)
        assert bb(torch.randn(1, 251, 32)).shape == (1, 251, 32)  # padded to 256 inside, cut back
        with pytest.raises(IndexError):  # one more token runs off the position table
            bb.model(inputs_embeds=torch.randn(1, 257, 32))
    # a table whose usable size is no multiple of the window: padding decides
    cfg = LongformerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           attention_window=8, max_position_embeddings=100)
    from fptlib.models.backbones import HFBackbone
    odd = HFBackbone(LongformerModel(cfg, add_pooling_layer=False), "longformer").eval()
    assert odd.max_positions == 96  # 98 usable, but 97-98 tokens would be padded to 104
    with torch.no_grad():
        assert odd(torch.randn(1, 96, 32)).shape == (1, 96, 32)
        with pytest.raises(IndexError):
            odd.model(inputs_embeds=torch.randn(1, 97, 32))


def test_t5_has_no_position_limit():
    bb = build_backbone(BackboneSpec("tiny-t5", init="random"), seed=0).eval()
    assert bb.max_positions == 10**9
    with torch.no_grad():
        assert bb(torch.randn(1, 600, 32)).shape == (1, 600, 32)


def test_too_long_for_longformer_is_refused_with_fptlibs_error(reliability):
    cfg = resolve(RunConfig("bit-memory", backbone="tiny-longformer", init="random", scale="smoke",
                            task_options={"n_bits": 100, "patch_size": 2}))  # 6 * 50 = 300 tokens
    with pytest.raises(RunError, match="has sequences of 300 tokens .* has 256 positions"):
        build(cfg)
    reliability.bad_input("300 tokens for a 256-position Longformer", kind="parameter")
    # the smoke scale's 60 tokens fit (padded to 64 inside the model)
    model, task = build(resolve(RunConfig("bit-memory", backbone="tiny-longformer", init="random",
                                          scale="smoke")))
    assert task.seq_len == 60 and model.backbone.max_positions == 256


@pytest.mark.parametrize("name", TINY)
def test_fpt_step_trains_only_fpt_groups_and_leaves_frozen_tensors_identical(name):
    torch.manual_seed(0)
    m = make(name, n_out=2)
    owner = m.groups()
    before_frozen = m.frozen_fingerprint()
    before_trainable = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    assert {owner[n] for n in before_trainable} == set(FPT_GROUPS)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    m.train()
    x = torch.randn(4, 20, 3)  # 20 tokens: Longformer pads them to 24 (window 8)
    mask = torch.ones(4, 20, dtype=torch.long)
    mask[1, 15:] = 0  # right padding
    for _ in range(2):
        loss = m(x, attention_mask=mask).square().mean()
        opt.zero_grad()
        loss.backward()
        for n, p in m.named_parameters():
            assert (p.grad is not None) == p.requires_grad, n
        pos = [p for n, p in m.named_parameters() if owner[n] == "positions"]
        assert any(p.grad.abs().sum() > 0 for p in pos)  # the position information gets gradient
        opt.step()
    assert m.frozen_fingerprint() == before_frozen
    moved = {owner[n] for n, p in m.named_parameters() if n in before_trainable
             and not torch.equal(p, before_trainable[n])}
    assert moved == set(FPT_GROUPS)


@pytest.mark.parametrize("name", TINY)
def test_inference_mode_runs_the_plain_model(name):
    """fastpath's GPT-2/BERT shortcuts must not touch these families; outputs match no_grad."""
    m = make(name, n_out=1).eval()
    x = torch.randn(2, 17, 3)
    with torch.no_grad():
        ref = m(x)
    with torch.inference_mode():
        fast = m(x)
    assert torch.equal(ref, fast)


@pytest.mark.parametrize("name", TINY)
def test_truncate_attention_dropout_and_block_index(name, reliability):
    bb = build_backbone(BackboneSpec(name=name, init="random", n_layers=1, attention_dropout=0.0), seed=0)
    assert len(bb.blocks()) == 1
    owner = bb.groups()
    assert "positions" in owner.values()  # T5's relative bias lives in block 0: never cut
    for n in owner:
        if ".0." in n and ("encoder.block" in n or "encoder.layer" in n):
            assert bb.block_index(n) == 0, n
    assert bb.block_index("model.embeddings.position_embeddings.weight") is None
    if name == "tiny-t5":
        assert bb.model.encoder.block[0].layer[0].SelfAttention.dropout == 0.0
        assert bb.model.config.num_layers == 1
    else:
        assert bb.model.encoder.layer[0].attention.self.dropout == 0.0
        assert bb.model.config.attention_window == [8] and bb.max_positions == 256
    with pytest.raises(BackboneError, match="attention dropout must be in"):
        set_attention_dropout(bb, 1.0)
    reliability.bad_input("attention dropout 1.0", kind="parameter")


def test_attention_last_is_the_last_t5_block():
    m = make("tiny-t5")
    m.set_trainable(["attention_last"])
    on = {n for n, p in m.named_parameters() if p.requires_grad}
    assert on and all(n.startswith("backbone.model.encoder.block.1.layer.0.SelfAttention.") for n in on)


@pytest.mark.parametrize("name", TINY)
def test_random_and_stats_inits_are_seeded(name):
    a = build_backbone(BackboneSpec(name=name, init="random"), seed=1)
    b = build_backbone(BackboneSpec(name=name, init="random"), seed=1)
    c = build_backbone(BackboneSpec(name=name, init="random"), seed=2)
    pa, pb, pc = (dict(x.named_parameters()) for x in (a, b, c))
    assert list(pa) == list(pb) == list(pc) and pa
    for n in pa:
        assert torch.equal(pa[n], pb[n]), n
    assert any(not torch.equal(pa[n], pc[n]) for n in pa)
    with pytest.raises(BackboneError, match="no pretrained weights; use --init random"):
        build_backbone(BackboneSpec(name=name, init="stats"), seed=0)  # stats needs pretrained weights


def _t5_dir(tmp_path, cls=T5EncoderModel):
    torch.manual_seed(11)
    saved = cls(T5Config(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, vocab_size=100))
    saved.save_pretrained(tmp_path / "t5")
    return tmp_path / "t5", saved


def _longformer_dir(tmp_path):
    torch.manual_seed(12)
    saved = LongformerModel(LongformerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64, attention_window=8,
                                             max_position_embeddings=130, vocab_size=100),
                            add_pooling_layer=False)
    saved.save_pretrained(tmp_path / "longformer")
    return tmp_path / "longformer", saved


@pytest.mark.parametrize("which", ["t5", "longformer"])
def test_pretrained_from_a_save_pretrained_directory(tmp_path, which):
    path, saved = _t5_dir(tmp_path) if which == "t5" else _longformer_dir(tmp_path)
    bb = build_backbone(BackboneSpec(name=str(path), init="pretrained"), seed=0)
    assert bb.family == which and bb.width == 32
    assert bb.max_positions == (10**9 if which == "t5" else 128)
    ref = saved.state_dict()
    got = bb.model.state_dict()
    # T5's alias of the token table (tied to `shared`) is dropped: FPT never reads it
    assert set(got) == set(ref) - {"encoder.embed_tokens.weight"}
    for k in got:
        assert torch.equal(got[k], ref[k]), k
    # stats init: every tensor redrawn from its pretrained mean and std
    s = build_backbone(BackboneSpec(name=str(path), init="stats"), seed=0)
    big = [(n, p) for n, p in bb.named_parameters() if p.numel() >= 1000]
    redrawn = dict(s.named_parameters())
    assert big and [n for n, _ in bb.named_parameters()] == list(redrawn)
    for n, a in big:
        b = redrawn[n]
        assert not torch.equal(a, b), n
        assert abs(a.mean() - b.mean()) < 0.1 * a.std() + 1e-4, n


def test_t5_encoder_from_a_full_t5_checkpoint(tmp_path):
    """A directory of the whole encoder-decoder loads its encoder; the decoder is dropped."""
    path, saved = _t5_dir(tmp_path, T5ForConditionalGeneration)
    bb = build_backbone(BackboneSpec(name=str(path), init="pretrained"), seed=0)
    assert not any(n.startswith("model.decoder") for n, _ in bb.named_parameters())
    assert torch.equal(bb.model.encoder.block[1].layer[1].DenseReluDense.wo.weight,
                       saved.encoder.block[1].layer[1].DenseReluDense.wo.weight)
    assert torch.equal(bb.model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight,
                       saved.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight)


def test_longformer_attention_maps_are_refused(reliability):
    m = make("tiny-longformer")
    with pytest.raises(BackboneError, match="sliding-window attention"):
        m(torch.randn(1, 8, 3), output_attentions=True)
    reliability.bad_input("attention maps of a Longformer", kind="parameter")


def test_t5_attention_maps_with_eager_attention():
    m = make("tiny-t5", attn_implementation="eager").eval()
    with torch.no_grad():
        _, attn = m(torch.randn(2, 9, 3), output_attentions=True)
    assert len(attn) == 2 and attn[0].shape == (2, 2, 9, 9)
    assert torch.allclose(attn[1].sum(-1), torch.ones(2, 2, 9), atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_smoke_training_run(tmp_path, name):
    res = train(RunConfig("bit-xor", backbone=name, init="random", scale="smoke", steps=2, save_backbone=True),
                tmp_path / "r", progress=False)
    assert res["frozen_unchanged"] is True and res["frozen_tensors"] > 0
    assert res["backbone"] == name and res["steps"] == 2
    assert 0 <= res["test_accuracy"] <= 1
    # the saved backbone (one name per tensor) loads back as init 'bit' weights
    saved = tmp_path / "r" / "backbone.safetensors"
    from safetensors.torch import load_file
    state = load_file(str(saved))
    bb = build_backbone(BackboneSpec(name=name, init="bit", weights=str(saved)), seed=5)
    assert set(bb.state_dict()) == set(state)
    assert all(torch.equal(v, state[k]) for k, v in bb.state_dict().items())
    fresh = build_backbone(BackboneSpec(name=name, init="random"), seed=0)  # the run's seed
    owner = fresh.groups()
    trained, initial = dict(bb.named_parameters()), dict(fresh.named_parameters())
    assert list(trained) == list(initial) == list(owner)
    for n, a in trained.items():
        assert torch.equal(a, initial[n]) == (owner[n] not in FPT_GROUPS), n  # only FPT's groups trained
