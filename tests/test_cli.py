"""The command line: help, errors that name the valid choices, exit codes."""
import subprocess

from conftest import SHORT_WAIT


def _help(fpt_cmd, *args) -> str:
    return subprocess.run(fpt_cmd + [*args, "--help"], capture_output=True, text=True, check=True,
                          timeout=SHORT_WAIT).stdout


def test_help_documents_every_command(fpt_cmd):
    top = _help(fpt_cmd)
    assert "train" in top and "reproduce" in top
    tr = _help(fpt_cmd, "train")
    for flag in ("--backbone", "--init", "--train", "--scale", "--seed", "--out", "--steps", "--batch-size",
                 "--lr", "--resume"):
        assert flag in tr
    rp = _help(fpt_cmd, "reproduce")
    assert "--only" in rp and "--scale" in rp


def test_unknown_task_exits_2_and_lists_tasks(fpt_cmd, tmp_path, reliability):
    r = subprocess.run(fpt_cmd + ["train", "cifar100", "--out", str(tmp_path / "x")], capture_output=True,
                       text=True, timeout=SHORT_WAIT)
    assert r.returncode == 2 and "choose one of bit-xor, bit-memory, mnist, listops" in r.stderr
    reliability.bad_input("fpt train cifar100", kind="command line")


def test_bad_group_and_patch_size(fpt_cmd, tmp_path, reliability):
    r = subprocess.run(fpt_cmd + ["train", "mnist", "--train", "input,attn", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=SHORT_WAIT)
    assert r.returncode == 2 and "unknown parameter group" in r.stderr
    reliability.bad_input("--train input,attn", kind="command line")
    r = subprocess.run(fpt_cmd + ["train", "mnist", "--scale", "smoke", "--option", "patch_size=5",
                                  "--out", str(tmp_path / "y")], capture_output=True, text=True, timeout=SHORT_WAIT)
    assert r.returncode == 2 and "does not divide the 28x28 image" in r.stderr
    reliability.bad_input("--option patch_size=5", kind="command line")


def test_unwritable_output_directory(fpt_cmd, tmp_path, reliability):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = subprocess.run(fpt_cmd + ["train", "bit-xor", "--scale", "smoke", "--out", str(blocker / "run")],
                       capture_output=True, text=True, timeout=SHORT_WAIT)
    assert r.returncode == 2 and "cannot write to output directory" in r.stderr
    reliability.bad_input("--out under a file", kind="wrong run directory")


def test_unknown_notebook(fpt_cmd, reliability):
    r = subprocess.run(fpt_cmd + ["reproduce", "--only", "99"], capture_output=True, text=True, timeout=SHORT_WAIT)
    assert r.returncode == 2 and "no notebook matches" in r.stderr
    reliability.bad_input("--only 99", kind="command line")


def test_reproduce_refuses_zero_workers(fpt_cmd, reliability):
    r = subprocess.run(fpt_cmd + ["reproduce", "--only", "01", "--workers", "0"], capture_output=True, text=True,
                       timeout=SHORT_WAIT)
    assert r.returncode == 2 and "--workers 0: give 1 or more" in r.stderr
    reliability.bad_input("--workers 0", kind="command line")


def test_only_picks_a_notebook_by_number_name_or_prefix():
    from fptlib.study.notebooks import notebooks
    names = lambda only: [p.stem for p in notebooks(only)]  # noqa: E731
    assert names(["01"]) == ["01_table1_table2"]  # a number is that notebook, not 01b too
    assert names(["01b"]) == ["01b_table1_lstm"]
    assert names(["01_table1"]) == ["01_table1_table2"]
    assert names(["03_table6_7_convergence_fit", "01b"]) == ["01b_table1_lstm", "03_table6_7_convergence_fit"]
    assert names(["00", "14"]) == ["14_lr_sensitivity", "00_summary"]  # the summary runs last
