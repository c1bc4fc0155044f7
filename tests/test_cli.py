"""The command line: help, errors that name the valid choices, exit codes."""
import subprocess


def test_help_documents_every_command(fpt_cmd):
    top = subprocess.run(fpt_cmd + ["--help"], capture_output=True, text=True, check=True).stdout
    assert "train" in top and "reproduce" in top
    tr = subprocess.run(fpt_cmd + ["train", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--backbone", "--init", "--train", "--scale", "--seed", "--out", "--steps", "--batch-size",
                 "--lr", "--resume"):
        assert flag in tr
    rp = subprocess.run(fpt_cmd + ["reproduce", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--only" in rp and "--scale" in rp


def test_unknown_task_exits_2_and_lists_tasks(fpt_cmd, tmp_path):
    r = subprocess.run(fpt_cmd + ["train", "cifar100", "--out", str(tmp_path / "x")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "choose one of bit-xor, bit-memory, mnist, listops" in r.stderr


def test_bad_group_and_patch_size(fpt_cmd, tmp_path):
    r = subprocess.run(fpt_cmd + ["train", "mnist", "--train", "input,attn", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown parameter group" in r.stderr
    r = subprocess.run(fpt_cmd + ["train", "mnist", "--scale", "smoke", "--option", "patch_size=5",
                                  "--out", str(tmp_path / "y")], capture_output=True, text=True)
    assert r.returncode == 2 and "does not divide the 28x28 image" in r.stderr


def test_unwritable_output_directory(fpt_cmd, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = subprocess.run(fpt_cmd + ["train", "bit-xor", "--scale", "smoke", "--out", str(blocker / "run")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "cannot write to output directory" in r.stderr


def test_unknown_notebook(fpt_cmd):
    r = subprocess.run(fpt_cmd + ["reproduce", "--only", "99"], capture_output=True, text=True)
    assert r.returncode == 2 and "no notebook matches" in r.stderr


def test_reproduce_refuses_zero_workers(fpt_cmd):
    r = subprocess.run(fpt_cmd + ["reproduce", "--only", "01", "--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--workers 0: give 1 or more" in r.stderr


def test_only_picks_a_notebook_by_number_name_or_prefix():
    from fptlib.study.notebooks import notebooks
    names = lambda only: [p.stem for p in notebooks(only)]  # noqa: E731
    assert names(["01"]) == ["01_table1_table2"]  # a number is that notebook, not 01b too
    assert names(["01b"]) == ["01b_table1_lstm"]
    assert names(["01_table1"]) == ["01_table1_table2"]
    assert names(["03_table6_7_convergence_fit", "01b"]) == ["01b_table1_lstm", "03_table6_7_convergence_fit"]
    assert names(["00", "14"]) == ["14_lr_sensitivity", "00_summary"]  # the summary runs last
