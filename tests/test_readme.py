"""README is the front door: the two commands first, short, every link alive, and every results
table a verbatim copy of a committed metrics file (figures are never typed by hand)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"<!-- (metrics/[^ ]+) -->\n(.*?)<!-- end -->", re.S)


def test_readme_opens_with_the_two_commands_and_stays_short():
    head = README.splitlines()[:6]
    assert any(line.startswith("make repro") for line in head) and any(line.startswith("make test") for line in head)
    assert len(README.splitlines()) <= 400


def lines_not_in(path: str, body: str) -> list[str]:
    """The non-empty lines of a README block that its metrics file ``path`` does not hold."""
    source = (REPO / path).read_text(encoding="utf-8").splitlines()
    return [line for line in body.splitlines() if line.strip() and line not in source]


def test_every_results_block_is_in_its_committed_metrics_file():
    blocks = BLOCK.findall(README)
    assert len(blocks) >= 3, "README should show the classification, few-shot and segmentation tables"
    for path, body in blocks:
        assert body.strip(), f"empty block for {path}"
        missing = lines_not_in(path, body)
        assert not missing, f"README lines not in {path} (re-copy them from the file): {missing}"


def test_a_typed_figure_is_caught():
    """The check above fails on a figure that the metrics file does not hold."""
    path, body = BLOCK.findall(README)[0]
    row = body.splitlines()[2]
    typed = row.replace("|", "| 99.99 |", 1)
    assert lines_not_in(path, body.replace(row, typed, 1)) == [typed]


@pytest.mark.parametrize("doc", sorted({m for m in re.findall(r"\]\((docs/[^)#]+)", README)}))
def test_linked_docs_exist_with_their_anchors(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, re.M)}
    for anchor in re.findall(rf"\]\({re.escape(doc)}#([^)]+)\)", README):
        assert anchor in anchors, f"{doc} has no heading for #{anchor}"
