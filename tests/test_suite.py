"""The suite's own guarantees: no wait on a child process can hang it, a hung test fails with its name,
and the reliability line counts only what passing tests recorded, with known kinds."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BAD_INPUT_KINDS, FAULT_KINDS, SHORT_WAIT

TESTS = Path(__file__).resolve().parent
RUN_FUNCTIONS = {"run", "call", "check_call", "check_output"}


def _sources() -> list[Path]:
    return sorted([*TESTS.glob("*.py"), *TESTS.glob("golden/*.py")])


def _has_keyword(call: ast.Call, name: str) -> bool:
    return any(k.arg == name or k.arg is None for k in call.keywords)  # **kw may carry it


def unbounded_waits(source: str) -> list[tuple[int, str]]:
    """(line, what) for each wait on a child process or a stream read without a time limit."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        f = node.func
        owner = getattr(f.value, "id", None) or getattr(f.value, "attr", "")
        if owner == "subprocess" and f.attr in RUN_FUNCTIONS and not _has_keyword(node, "timeout"):
            out.append((node.lineno, f"subprocess.{f.attr} without timeout="))
        elif f.attr in ("wait", "communicate") and not node.args and not _has_keyword(node, "timeout"):
            out.append((node.lineno, f".{f.attr}() without a timeout"))
        elif f.attr in ("readline", "read", "readlines") and owner in ("stdout", "stderr"):
            out.append((node.lineno, f"{owner}.{f.attr}() (use conftest.read_line)"))
        elif f.attr == "urlopen" and not _has_keyword(node, "timeout"):
            out.append((node.lineno, "urlopen without timeout="))
    return out


def test_the_wait_finder_finds_each_kind_of_unbounded_wait():
    src = ("import subprocess\nsubprocess.run(['x'])\np.wait()\np.communicate()\np.stdout.readline()\n"
           "urllib.request.urlopen(u)\nsubprocess.run(['x'], timeout=5)\np.wait(timeout=5)\np.wait(5)\n"
           "p.communicate(timeout=5)\nread_line(p.stdout)\n")
    assert [line for line, _ in unbounded_waits(src)] == [2, 3, 4, 5, 6]


def test_every_wait_on_a_child_process_in_the_tests_is_bounded():
    found = [f"{p.relative_to(TESTS)}:{line}: {what}"
             for p in _sources() for line, what in unbounded_waits(p.read_text())]
    assert not found, "waits that can hang the suite:\n" + "\n".join(found)


def test_every_recorded_event_names_a_known_kind():
    """Each reliability.fault/bad_input call in the tests gives kind=: one of conftest's kinds, or an expression
    (checked when it runs)."""
    bad, calls = [], 0
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "reliability"):
                continue
            calls += 1
            kinds = FAULT_KINDS if node.func.attr == "fault" else BAD_INPUT_KINDS
            kind = next((k.value for k in node.keywords if k.arg == "kind"), None)
            if kind is None or isinstance(kind, ast.Constant) and kind.value not in kinds:
                bad.append(f"{p.name}:{node.lineno}")
    assert calls > 100
    assert not bad, f"reliability events without a known kind: {bad}"


INNER = '''
import time
import pytest

def test_passes_and_records(reliability):
    reliability.fault("one", kind="SIGKILL")
    reliability.fault("two", kind="full disk")
    reliability.bad_input("three", kind="command line")

def test_fails_after_recording(reliability):
    reliability.fault("not counted", kind="SIGKILL")
    assert False

def test_unknown_kind_is_refused(reliability):
    with pytest.raises(ValueError, match="unknown fault kind 'kill'"):
        reliability.fault("x", kind="kill")

@pytest.mark.timeout(2)
def test_hangs():
    time.sleep(60)
'''


def test_the_closing_line_counts_passing_tests_only_and_a_hung_test_fails_by_name(tmp_path):
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER)
    lines = []
    for _ in range(2):  # the same tests, the same closing lines
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=SHORT_WAIT)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "FAILED test_inner.py::test_hangs - Failed: Timeout" in r.stdout, r.stdout
        assert "FAILED test_inner.py::test_fails_after_recording" in r.stdout
        lines.append([x for x in r.stdout.splitlines() if x.startswith(("reliability:", "  faults:", "  bad inputs:"))])
    assert lines[0] == lines[1] == [
        "reliability: 2 faults injected, 1 bad inputs tried (recorded by 1 passing tests)",
        "  faults: SIGKILL 1, full disk 1", "  bad inputs: command line 1"]


def test_the_suite_runs_under_a_per_test_timeout(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout"), "pytest-timeout is not installed"
    limit = float(pytestconfig.getini("timeout"))
    assert 0 < limit <= 1800
    assert pytestconfig.getini("timeout_method") == "signal"  # the test fails, the session goes on


@pytest.mark.parametrize("kinds", [FAULT_KINDS, BAD_INPUT_KINDS], ids=["faults", "bad inputs"])
def test_the_kinds_are_documented(repo_root, kinds):
    text = (repo_root / "docs" / "reliability.md").read_text()
    assert all(f"| {k} |" in text for k in kinds), "docs/reliability.md lists every kind"
