"""Loading paths (from_pretrained on local files, the offline MiniLM) and initialisations."""
import pytest
import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

from fptlib.models.backbones import BackboneError, BackboneSpec, build_backbone, minilm_path


def _tiny_gpt2_dir(tmp_path):
    torch.manual_seed(123)
    m = GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64))
    m.save_pretrained(tmp_path / "tiny-gpt2")
    return tmp_path / "tiny-gpt2", m


def test_pretrained_gpt2_from_a_local_directory(tmp_path):
    path, saved = _tiny_gpt2_dir(tmp_path)
    bb = build_backbone(BackboneSpec(name=str(path), init="pretrained"), seed=0)
    assert bb.family == "gpt2" and bb.width == 32 and bb.max_positions == 64
    got, want = bb.model.state_dict(), saved.state_dict()
    assert set(got) == set(want) and len(got) > 20  # every tensor loaded, none left at its initial value
    for n in want:
        assert torch.equal(got[n], want[n]), n


def test_pretrained_bert_from_a_local_directory(tmp_path):
    torch.manual_seed(5)
    saved = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64), add_pooling_layer=False)
    saved.save_pretrained(tmp_path / "tiny-bert")
    bb = build_backbone(BackboneSpec(name=str(tmp_path / "tiny-bert"), init="pretrained"), seed=0)
    assert bb.family == "bert"
    got, want = bb.model.state_dict(), saved.state_dict()
    assert set(got) == set(want)
    for n in want:
        assert torch.equal(got[n], want[n]), n


def test_minilm_is_the_packaged_language_model():
    from safetensors.torch import load_file
    bb = build_backbone(BackboneSpec(name="minilm", init="pretrained"), seed=0)
    ref = load_file(minilm_path() / "model.safetensors")
    key = [k for k in ref if k.endswith("encoder.layer.3.attention.self.query.weight")][0]
    assert torch.equal(bb.model.encoder.layer[3].attention.self.query.weight, ref[key])
    assert (bb.width, len(bb.model.encoder.layer), bb.max_positions) == (384, 6, 512)


def test_random_init_is_seeded_and_differs_from_pretrained():
    a = build_backbone(BackboneSpec(name="minilm", init="random"), seed=1)
    b = build_backbone(BackboneSpec(name="minilm", init="random"), seed=1)
    c = build_backbone(BackboneSpec(name="minilm", init="random"), seed=2)
    p = build_backbone(BackboneSpec(name="minilm", init="pretrained"), seed=1)
    wa, wb, wc, wp = (x.model.encoder.layer[0].intermediate.dense.weight for x in (a, b, c, p))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc) and not torch.equal(wa, wp)


def test_stats_init_keeps_each_tensors_mean_and_std():
    p = build_backbone(BackboneSpec(name="minilm", init="pretrained"), seed=0)
    s = build_backbone(BackboneSpec(name="minilm", init="stats"), seed=0)
    ps, ss = dict(p.named_parameters()), dict(s.named_parameters())
    assert list(ps) == list(ss)
    assert sum(a.numel() >= 1000 for a in ps.values()) > 30
    for n, a in ps.items():
        b = ss[n]
        if a.numel() < 1000:
            continue
        assert not torch.equal(a, b), n
        assert abs(a.mean() - b.mean()) < 0.05 * a.std() + 1e-4, n
        assert abs(a.std() - b.std()) < 0.05 * a.std(), n


def test_truncation_keeps_the_first_blocks(reliability):
    full = build_backbone(BackboneSpec(name="minilm", init="pretrained"), seed=0)
    two = build_backbone(BackboneSpec(name="minilm", init="pretrained", n_layers=2), seed=0)
    assert len(two.model.encoder.layer) == 2
    assert torch.equal(two.model.encoder.layer[1].output.dense.weight, full.model.encoder.layer[1].output.dense.weight)
    with pytest.raises(BackboneError, match="has 6 blocks"):
        build_backbone(BackboneSpec(name="minilm", n_layers=9), seed=0)
    reliability.bad_input("9 of MiniLM's 6 blocks", kind="parameter")


@pytest.mark.parametrize("spec, message", [
    (BackboneSpec(name="gpt-9"), "unknown backbone 'gpt-9'; choose one of"),
    (BackboneSpec(name="tiny-gpt2", init="pretrained"), "no pretrained weights; use --init random"),
    (BackboneSpec(name="lstm", init="pretrained"), "LSTM baseline has no pretrained weights"),
    (BackboneSpec(name="minilm", init="pretrainde"), "unknown init 'pretrainde'"),
])
def test_bad_backbones_say_what_to_do(spec, message, reliability):
    with pytest.raises(BackboneError, match=message):
        build_backbone(spec, seed=0)
    reliability.bad_input(f"backbone {spec.name} init {spec.init}", kind="parameter")


def test_hub_name_without_network_explains_the_offline_options(monkeypatch, reliability):
    # gpt2 weights are not on this machine; the hub is unreachable (offline mode).
    with pytest.raises(BackboneError, match="--backbone minilm"):
        build_backbone(BackboneSpec(name="gpt2", init="pretrained"), seed=0)
    reliability.bad_input("gpt2 weights not in the cache, offline", kind="missing data")


def test_lstm_takes_right_padding_only(reliability):
    bb = build_backbone(BackboneSpec(name="lstm", init="random", lstm_width=16), seed=0).eval()
    x = torch.randn(2, 5, 16)
    assert bb(x).shape == (2, 5, 16)
    right = bb(x, torch.tensor([[1, 1, 1, 0, 0], [1] * 5]))
    assert torch.allclose(right[0, :3], bb(x[:1, :3])[0], atol=1e-5)  # the padding never reaches real tokens
    with pytest.raises(BackboneError, match="right padding"):
        bb(x, torch.tensor([[0, 0, 1, 1, 1], [1] * 5]))
    reliability.bad_input("left padding to the LSTM", kind="parameter")
