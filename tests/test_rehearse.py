"""The paper-scale rehearsal: fixtures in canonical formats, the loopback mirror, the LSTM's width from the
config.json at hand, failures that name their run, and one notebook rehearsed end to end (the full
sixteen run in .ci/run as `make rehearse`)."""
import json
import os
import subprocess
import sys
import urllib.request

import pytest
from conftest import LONG_WAIT

from fptlib.config import RunConfig, resolve
from fptlib.rehearse import fixtures, mirror, standins
from fptlib.rehearse.run import Layout, missing_outputs
from fptlib.runs import PlannedRun, execute
from fptlib.study.catalogue import NOTEBOOKS

SMALL = fixtures.Sizes(mnist_train=30, mnist_test=10, cifar_per_batch=4, cifar_test=3, listops=(3, 2, 2),
                       listops_len=(20, 60), homology=(3, 2, 2, 2, 2))


def test_fixtures_are_reproducible_and_their_checksums_match(tmp_path):
    a = fixtures.canonical_files(SMALL)
    assert a == fixtures.canonical_files(SMALL)
    assert a != fixtures.canonical_files(SMALL, seed=1)
    sums = fixtures.write(tmp_path, SMALL)
    assert json.loads((tmp_path / "checksums.json").read_text()) == sums
    for name, data in a.items():
        assert (tmp_path / name).read_bytes() == data
        if not name.endswith(".tsv"):  # LRA publishes no checksum for its TSVs
            import hashlib
            assert sums[name] == "sha256:" + hashlib.sha256(data).hexdigest()


def test_default_fixture_sizes_fit_the_paper_settings():
    """The fixtures' training sets hold the paper scale's validation split and a few more images to train on."""
    n_val = {task: resolve(RunConfig(task=task, scale="paper")).task_options["n_val"]
             for task in ("mnist", "cifar10", "cifar10-lra")}
    assert n_val == {"mnist": 5000, "cifar10": 1000, "cifar10-lra": 1000}
    sizes = fixtures.Sizes()
    assert sizes.mnist_train - n_val["mnist"] >= 10 and 5 * sizes.cifar_per_batch - n_val["cifar10"] >= 10


def test_mirror_serves_files_on_loopback_only_while_open(tmp_path):
    (tmp_path / "basic_val.tsv").write_text("Source\tTarget\n")
    with mirror.serve(tmp_path, lifetime=60) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/basic_val.tsv", timeout=10) as r:
            assert r.read() == b"Source\tTarget\n"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/basic_val.tsv", timeout=5)


def _lstm_width(env: dict) -> int:
    """The paper scale's LSTM width, resolved in a fresh process (the hub reads its cache dir at import)."""
    code = ("from fptlib.config import RunConfig, resolve; "
            "print(resolve(RunConfig(task='mnist', scale='paper', backbone='lstm')).lstm_width)")
    out = subprocess.run([sys.executable, "-c", code], env=os.environ | env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_lstm_is_as_wide_as_the_gpt2_config_at_hand(tmp_path):
    standins.write_hub_cache(tmp_path / "hub", ["gpt2"])
    assert _lstm_width({"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}) == \
        standins.STANDINS["gpt2"][1]["n_embd"]
    # no config.json at hand: GPT-2 base's width, so the paper scale's run ids are what they were
    assert _lstm_width({"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}) == 768


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_run_is_named(tmp_path, monkeypatch, workers):
    monkeypatch.setenv("FPT_FAULT", "nosuchpoint")  # raises inside train(), in a worker too
    cfg = resolve(RunConfig(task="bit-xor", scale="smoke", steps=2))
    import re
    with pytest.raises(Exception, match=f"run .*{re.escape(cfg.run_id())}.*bit-xor.*unknown point 'nosuchpoint'"):
        execute([PlannedRun("FPT", cfg)], progress=False, workers=workers)


def test_missing_outputs_are_named_per_notebook(tmp_path):
    missing = missing_outputs(Layout(tmp_path), only=["01", "04"])
    assert set(missing) == {"01_table1_table2", "04_attention_maps"}
    assert "tables/table01_02.csv" in missing["01_table1_table2"]
    assert any(f.startswith("figures/attention_xor") for f in missing["04_attention_maps"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_rehearse_one_notebook_end_to_end(tmp_path, fpt_cmd):
    """`fpt rehearse --only 01`: stand-ins under the real hub names, fixture data fetched from the mirror,
    the notebook at scale paper; its tables and figures written, every run listed with its sources."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FPT_")}
    proc = subprocess.run(fpt_cmd + ["rehearse", "--only", "01", "--workdir", str(tmp_path)], capture_output=True,
                          text=True, timeout=LONG_WAIT, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "downloading http://127.0.0.1:" in out and "unpacking remote_homology.tar.gz" in out
    manifest = json.loads((tmp_path / "data" / "mnist" / ".fetch-manifest.json").read_text())
    assert manifest["files"] and all(r["url"].startswith("http://127.0.0.1:") for r in manifest["files"].values())
    nb = next(n for n in NOTEBOOKS if n.key == "01")
    tables, figures = nb.outputs("paper")
    for t in tables:
        assert (tmp_path / "results" / "paper" / "tables" / f"{t}.md").is_file()
    for f in figures:
        assert (tmp_path / "figures" / "paper" / f).stat().st_size > 5_000
    listing = (tmp_path / "results" / "paper" / "rehearsal.md").read_text()
    runs = [line for line in listing.splitlines() if line.startswith("| 01 |")]
    assert len(runs) == 14  # FPT and Random on seven tasks, one seed
    assert all("hub gpt2, cache snapshot" in line for line in runs)
    for source in ("MNIST IDX files in <data>/mnist", "LRA TSV files in <data>/listops", "TAPE remote homology",
                   "CIFAR-10 python-version batch files", "generated, seeded"):
        assert source in listing, source
    # the runs are the paper's settings but the step cap: gpt2 (the stand-in), full data splits, 2 steps
    res = json.loads(next((tmp_path / "results" / "paper" / "runs").glob("mnist__gpt2__pretrained*/result.json"))
                     .read_text())
    assert res["steps"] == 2 and res["config"]["scale"] == "paper" and res["config"]["backbone"] == "gpt2"
    assert res["task_info"]["split_sizes"]["val"] == 5000
