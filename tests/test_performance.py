"""The speed work (issue 3) computes the same functions: inference shortcuts, the fused GELU, the
original-implementation baseline, output-only training on cached features; and `fpt bench` runs."""
import json
import subprocess

import pytest
import torch
from conftest import LONG_WAIT, SHORT_WAIT

from fptlib import RunConfig, train
from fptlib.models import FPT, BackboneError, BackboneSpec, build_backbone
from fptlib.perf.bench import SHAPES, Shape, step_flops
from fptlib.perf.bench import run as run_bench
from fptlib.training import RunError, head_step


def _fpt(name, n_out=1, seed=0, **spec):
    bb = build_backbone(BackboneSpec(name, init="random", **spec), seed)
    return FPT(bb, input_kind="linear", d_in=5, n_out_tokens=n_out, out_dim=4)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bert"])
@pytest.mark.parametrize("n_out", [1, 3])
def test_inference_shortcuts_compute_the_plain_forward(name, n_out, monkeypatch):
    import fptlib.models.fastpath as fp
    pruned = []
    for attr in ("_gpt2_last_block", "_bert_last_layer"):
        orig = getattr(fp, attr)
        monkeypatch.setattr(fp, attr, lambda block, n, orig=orig: pruned.append(n) or orig(block, n))
    m = _fpt(name, n_out).eval()
    x = torch.randn(3, 20, 5)
    with torch.no_grad():
        plain = m(x)
    assert not pruned  # no_grad alone takes the plain path
    with torch.inference_mode():
        fast = m(x)
    assert pruned == [n_out]  # the last block really was cut to the tokens read
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    # padded batches read a per-row token: no pruning, and still the same numbers
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[0, 15:] = 0
    with torch.no_grad():
        plain = m(x, mask)
    with torch.inference_mode():
        fast = m(x, mask)
    assert pruned == [n_out]
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_inference_shortcuts_leave_the_modules_as_they_were():
    m = _fpt("tiny-gpt2").eval()
    with torch.inference_mode():
        m(torch.randn(2, 8, 5))
    for mod in m.modules():
        assert "forward" not in mod.__dict__


def test_gpt2_gelu_is_fused_and_the_same_function():
    from transformers.activations import NewGELUActivation
    m = _fpt("tiny-gpt2")
    acts = [b.mlp.act for b in m.backbone.blocks()]
    assert all(isinstance(a, torch.nn.GELU) and a.approximate == "tanh" for a in acts)
    x = torch.linspace(-8, 8, 10001)
    torch.testing.assert_close(acts[0](x), NewGELUActivation()(x), rtol=0, atol=2e-6)


def test_attention_dropout_option():
    m = _fpt("tiny-gpt2", attention_dropout=0.0)
    assert all(b.attn.attn_dropout.p == 0.0 for b in m.backbone.blocks())
    m = _fpt("tiny-bert", attention_dropout=0.0)
    assert all(b.attention.self.dropout.p == 0.0 for b in m.backbone.blocks())
    assert all(b.attn.attn_dropout.p == 0.1 for b in _fpt("tiny-gpt2").backbone.blocks())
    with pytest.raises(BackboneError, match=r"\[0, 1\)"):
        _fpt("tiny-gpt2", attention_dropout=1.5)


def test_new_options_keep_the_hash_of_existing_runs():
    cfg = RunConfig("bit-xor", scale="smoke")
    assert "attention_dropout" in cfg.to_dict()
    assert RunConfig("bit-xor", scale="smoke", attention_dropout=0.0).hash() != cfg.hash()
    d = cfg.to_dict()
    from fptlib.config import _LATER_FIELDS
    for k in _LATER_FIELDS:
        d.pop(k)
    import hashlib
    legacy = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert cfg.hash() == legacy


def test_original_baseline_is_the_same_model():
    """The 2021 step (eager attention, Python GELU, Adam over every parameter) computes what ours does."""
    from fptlib.groups import FPT_GROUPS
    from fptlib.perf.original import OriginalStep, build_original
    ours = _fpt("tiny-gpt2", n_out=2).eval()
    bb = build_backbone(BackboneSpec("tiny-gpt2", init="random", attn_implementation="eager"), 0)
    trainable = {n for n, g in bb.groups().items() if g in FPT_GROUPS}
    orig = build_original(bb.model, "gpt2", "linear", 5, 2, 4, trainable).eval()
    orig.in_net.load_state_dict(ours.input.state_dict())
    orig.out_net.load_state_dict(ours.output.state_dict())
    x = torch.randn(3, 12, 5)
    with torch.no_grad():
        torch.testing.assert_close(orig(x), ours(x), rtol=1e-5, atol=1e-5)
    step = OriginalStep(orig, n_classes=2)
    assert len(step.opt.param_groups[0]["params"]) == len(list(orig.parameters()))  # frozen ones too
    frozen = {n: p.clone() for n, p in orig.named_parameters() if not p.requires_grad}
    loss, acc = step.train_step(x, torch.randint(0, 2, (3, 4)))
    assert loss > 0 and 0 <= acc <= 1
    assert all(torch.equal(p, frozen[n]) for n, p in orig.named_parameters() if n in frozen)


def test_head_step_is_autograds_step():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    b.load_state_dict(a.state_dict())
    oa, ob = torch.optim.Adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), 1e-2, fused=True)
    for _ in range(5):
        h, y = torch.randn(8, 1, 6) * 30, torch.randint(0, 4, (8, 1))  # large: clipping engages
        oa.zero_grad()
        loss = torch.nn.functional.cross_entropy(a(h).reshape(-1, 4), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(a.parameters()), 1.0)
        oa.step()
        got = head_step(b, ob, h, y, 4, 1.0)
        torch.testing.assert_close(got, loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.weight, a.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.bias, a.bias, rtol=1e-5, atol=1e-6)


def test_output_only_run_on_cached_features(tmp_path):
    cfg = RunConfig("mnist", scale="smoke", train=("output",), cache_features=True, steps=40, eval_every=20)
    res = train(cfg, tmp_path / "c", progress=False)
    assert res["frozen_unchanged"] and res["trainable_params"] == res["trainable_params_by_group"]["output"]
    assert "no dropout" in res["feature_cache"]["note"] and res["feature_cache"]["build_seconds"] > 0
    # 256 training digits in batches of 8: 32 steps an epoch, so 2 epochs (the second partial)
    assert len(res["epoch_step_seconds"]) == 2
    assert res["test_examples"] == 200 and 0 <= res["test_accuracy"] <= 1
    again = train(cfg, tmp_path / "d", progress=False)
    assert again["test"] == res["test"]  # seeded like every run


def test_cached_features_are_the_models_features(tmp_path):
    from fptlib.config import resolve
    from fptlib.training import FeatureCache, build
    cfg = resolve(RunConfig("mnist", scale="smoke", train=("output",), cache_features=True))
    model, task = build(cfg)
    cache = FeatureCache(model, task, 64, "cpu", ("train",))
    batch = task.train_batch(3, 8)
    model.eval()
    with torch.no_grad():
        want = model.features(batch["x"])
    got = cache.train_batch(3, 8)
    torch.testing.assert_close(got["h"], want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got["y"], batch["y"])


@pytest.mark.parametrize("task,train_groups,why", [
    ("bit-xor", ("output",), "fresh examples every step"),
    ("mnist", ("output", "layernorm"), "trains only the output layer"),
])
def test_cache_features_refuses_what_it_cannot_cache(tmp_path, task, train_groups, why, reliability):
    with pytest.raises(RunError, match=why):
        train(RunConfig(task, scale="smoke", train=train_groups, cache_features=True), tmp_path / "r",
              progress=False)
    assert not (tmp_path / "r" / "config.json").exists()  # refused before anything was written
    reliability.bad_input(f"cache_features with {task} {train_groups}", kind="parameter")


def test_the_cacheable_tasks_are_those_with_a_fixed_training_set_and_the_refusal_names_them():
    import re

    from fptlib.data import CACHEABLE, TASKS, fixed_training_set, make_task, task_class
    from fptlib.study import studies
    from fptlib.training.steps import check_cacheable
    assert CACHEABLE == studies.CACHEABLE == tuple(t for t in TASKS if fixed_training_set(task_class(t)))
    assert set(CACHEABLE) == {"mnist", "listops", "cifar10", "cifar10-lra", "homology", "fashion-mnist"}
    assert all(studies.cached_output_only(t)["cache_features"] == (t in CACHEABLE) for t in TASKS)
    with pytest.raises(RunError, match="fresh examples every step") as refused:
        check_cacheable(RunConfig("bit-xor", train=("output",), cache_features=True), make_task("bit-xor"))
    assert re.split(r", | or ", str(refused.value).split("; use ")[1]) == list(CACHEABLE)


def test_step_flops_by_hand():
    s = Shape(batch=2, tokens=3, d_in=5, input_kind="linear", n_out_tokens=1, out_dim=4, n_classes=4)
    f = step_flops(s, width=8, layers=1, ffn=32)
    dense = 6 * 2 * (4 * 64 + 2 * 8 * 32)
    attn = 2 * 2 * 2 * 9 * 8
    inp, out = 2 * 6 * 5 * 8, 2 * 2 * 8 * 4
    assert f["forward"] == dense + attn + inp + out
    assert f["backward"] == dense + 2 * attn + 2 * out + inp
    assert set(SHAPES) == {"cifar10", "mnist", "bit-memory", "cifar10-lra", "listops"}


def test_bench_writes_its_record_and_tables(tmp_path):
    rec = run_bench(tmp_path, {"tiny-gpt2": "random"}, ["mnist"], reps=1, eval_batches=1, progress=False)
    r = rec["results"]["tiny-gpt2/mnist"]
    assert r["frozen_unchanged"]
    for impl in ("original", "ours", "ours_fused_attention"):
        assert r[impl]["step_seconds"] > 0 and r[impl]["gflops"] > 0 and 0 < r[impl]["ceiling_fraction"]
        assert r[impl]["memory"]["step_peak_bytes"] > 0
    assert r["ours"]["speedup"] == pytest.approx(r["original"]["step_seconds"] / r["ours"]["step_seconds"])
    assert min(rec["ceiling_gflops"]) > 0 and rec["machine"]["torch_threads"] >= 1
    oc = rec["output_only_cached"]
    assert oc["speedup_after_first_epoch"] > 1 and len(oc["cached_later_epoch_seconds"]) == 3
    saved = json.loads(next((tmp_path / "runs").glob("bench_*.json")).read_text())
    assert saved["results"].keys() == rec["results"].keys()
    md = (tmp_path / "bench.md").read_text()
    assert "| tiny-gpt2 | mnist |" in md and "ceiling" in md
    assert (tmp_path / "bench.csv").read_text().startswith("backbone,shape,")


def test_bench_skips_shapes_longer_than_the_positions(tmp_path):
    rec = run_bench(tmp_path, {"tiny-gpt2": "random"}, ["cifar10-lra"], reps=1, memory=False, cached=False,
                    progress=False)
    assert "256 positions" in rec["results"]["tiny-gpt2/cifar10-lra"]["skipped"]
    assert "do not fit" in (tmp_path / "bench.md").read_text()


def test_cli_bench_side_by_side_times_both_ways_and_leaves_no_runs(fpt_cmd, tmp_path):
    r = subprocess.run(fpt_cmd + ["bench", "--side-by-side", "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=LONG_WAIT)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((tmp_path / "side_by_side.json").read_text())
    t = rec["tasks"]["bit-xor"]
    assert t["one_after_another"]["seconds"] > 0 and t["side_by_side"]["seconds"] > 0
    assert t["speedup"] == pytest.approx(t["one_after_another"]["seconds"] / t["side_by_side"]["seconds"])
    assert len(t["side_by_side"]["test_accuracy"]) == 2 and rec["workers"] == 2
    assert "| bit-xor |" in (tmp_path / "side_by_side.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["side_by_side.json", "side_by_side.md"]


def test_cli_bench_rejects_an_unknown_shape(fpt_cmd, tmp_path, reliability):
    r = subprocess.run(fpt_cmd + ["bench", "--quick", "--shapes", "imagenet", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=SHORT_WAIT)
    assert r.returncode == 2 and "unknown bench shape" in r.stderr and "cifar10" in r.stderr
    reliability.bad_input("fpt bench --shapes imagenet", kind="command line")


def test_cli_passes_the_speed_options(fpt_cmd, tmp_path):
    r = subprocess.run(fpt_cmd + ["train", "mnist", "--scale", "smoke", "--train", "output", "--cache-features",
                                  "--attention-dropout", "0", "--steps", "3", "--no-progress",
                                  "--out", str(tmp_path / "r")], capture_output=True, text=True,
                       timeout=SHORT_WAIT)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["cache_features"] is True and cfg["attention_dropout"] == 0.0
    assert "feature_cache" in json.loads((tmp_path / "r" / "result.json").read_text())


def test_stats_init_does_not_depend_on_the_thread_count():
    """A stats-init run resumed with another thread count rebuilds bit-identical frozen tensors (found
    when a cpu-scale run resumed with 1 thread after starting with 2 reported frozen_unchanged False)."""
    n = torch.get_num_threads()
    try:
        prints = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            prints.append(_fpt("tiny-bert", seed=3).backbone.state_dict())
            bb = build_backbone(BackboneSpec("minilm", init="stats", n_layers=1), 3)
            prints.append(bb.state_dict())
    finally:
        torch.set_num_threads(n)
    for a, b in ((prints[0], prints[2]), (prints[1], prints[3])):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_offline_bench_times_bf16_against_fp32_each_against_its_own_ceiling(tmp_path):
    from fptlib.perf.bench import offline_shapes
    shapes = offline_shapes()
    assert set(shapes) == {"bit-memory", "bit-xor", "listops", "mnist", "fashion-mnist", "pfam"}
    assert (shapes["mnist"].batch, shapes["mnist"].tokens, shapes["mnist"].d_in) == (16, 49, 16)
    rec = run_bench(tmp_path, {"tiny-gpt2": "random"}, ["bit-xor"], reps=1, eval_batches=1, memory=False,
                    cached=False, progress=False, kind="offline")
    r = rec["results"]["tiny-gpt2/bit-xor"]
    assert set(rec["impls"]) == {"original", "ours", "ours_bf16"} and "ours_fused_attention" not in r
    assert r["ours_bf16"]["precision"] == "bf16" and r["frozen_unchanged"]
    assert r["ours_bf16"]["speedup_over_fp32"] == pytest.approx(r["ours"]["step_seconds"]
                                                                / r["ours_bf16"]["step_seconds"])
    ceiling = {"fp32": max(rec["ceiling_gflops"]), "bf16": max(rec["ceiling_gflops_bf16"])}
    for impl in ("ours", "ours_bf16"):  # each fraction is of its own precision's ceiling
        want = r[impl]["gflops"] / ceiling[r[impl]["precision"]]
        assert r[impl]["ceiling_fraction"] == pytest.approx(want)
    assert r["gemm_only_ceiling_fraction_bf16"] == pytest.approx(r["gemm_only_gflops_bf16"] / ceiling["bf16"])
    md = (tmp_path / "offline.md").read_text()
    assert "bf16 over ours fp32" in md and "bf16 matmuls-only % of bf16 ceiling" in md and "precision auto" in md
    assert not (tmp_path / "bench.md").exists() and next((tmp_path / "runs").glob("offline_*.json"))


def test_bench_refuses_an_unknown_implementation(tmp_path):
    with pytest.raises(ValueError, match="implementation"):
        run_bench(tmp_path, {"tiny-gpt2": "random"}, ["bit-xor"], reps=1, memory=False, cached=False,
                  progress=False, kind="offline", impls=("ours", "ours_fp8"))
