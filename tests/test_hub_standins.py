"""The real loading path on stand-ins: tiny models saved under the real hub names into a cache laid
out as the hub writes it load through from_pretrained with HF_HUB_OFFLINE=1, and random init takes its
architecture from the same config.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import LONG_WAIT

from fptlib.rehearse.standins import STANDINS, snapshot_dir, write_hub_cache

PROBE = """
import json
from fptlib.models import BackboneSpec, build_backbone, weights_missing
out = {}
for name in ("gpt2", "gpt2-large", "bert-base-uncased", "t5-base", "allenai/longformer-base-4096", "vit-base"):
    bbs = {init: build_backbone(BackboneSpec(name, init=init), 0) for init in ("pretrained", "random")}
    out[name] = {"missing": weights_missing(name), **{i: [b.width, len(b.blocks())] for i, b in bbs.items()}}
print(json.dumps(out))
"""


def test_standins_load_through_the_real_path_and_shape_random_init(tmp_path):
    write_hub_cache(tmp_path / "hub")
    repo = tmp_path / "hub" / "models--gpt2"
    assert (repo / "refs" / "main").is_file() and (snapshot_dir(tmp_path / "hub", "gpt2") / "config.json").is_file()
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=LONG_WAIT)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for name, probe in got.items():
        real = "google/vit-base-patch16-224" if name == "vit-base" else name
        shape = STANDINS[real][1]
        width = shape.get("n_embd") or shape.get("hidden_size") or shape.get("d_model")
        layers = shape.get("n_layer") or shape.get("num_hidden_layers") or shape.get("num_layers")
        assert probe["missing"] is None, name
        assert probe["pretrained"] == probe["random"] == [width, layers], name  # not gpt2-small's 768 x 12


def test_without_the_cache_random_init_uses_the_builtin_shapes():
    env = {**os.environ, "HF_HUB_CACHE": "/nonexistent-cache", "HF_HUB_OFFLINE": "1"}
    code = ("from fptlib.models import BackboneSpec, build_backbone; "
            "print(build_backbone(BackboneSpec('gpt2-medium', init='random'), 0).width)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=LONG_WAIT)
    assert r.returncode == 0 and r.stdout.strip().endswith("1024"), r.stderr[-2000:]
