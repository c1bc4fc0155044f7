"""The documentation stands alone: short README, links that resolve inside the repository, and no
committed result or document that names a directory of the machine that wrote it."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
ABSOLUTE = re.compile(r"""(^|["'(\s=:])/(work|tmp|home|root|Users)/""")


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def _anchors(md: Path) -> set[str]:
    heads = [line.lstrip("#").strip() for line in md.read_text().splitlines() if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_every_link_resolves_to_a_file_in_the_repository():
    bad = []
    for md in DOCS:
        for target in LINK.findall(md.read_text()):
            if re.match(r"[a-z]+:", target):  # http(s), mailto: not a file
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists() or ROOT.resolve() not in dest.parents and dest != ROOT.resolve():
                bad.append(f"{md.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{md.name}: {target} (no such heading)")
    assert not bad, bad


def test_nothing_cites_a_file_outside_the_repository():
    for md in DOCS:
        assert "shared/reference" not in md.read_text(), md


def test_no_committed_result_or_doc_names_a_machine_directory():
    files = subprocess.run(["git", "ls-files", "results", "docs", "README.md"], cwd=ROOT, capture_output=True,
                           text=True, check=True, timeout=60).stdout.split()
    bad = [f for f in files if f.endswith((".json", ".jsonl", ".csv", ".md", ".html"))
           and ABSOLUTE.search((ROOT / f).read_text(errors="replace"))]
    assert not bad, bad
