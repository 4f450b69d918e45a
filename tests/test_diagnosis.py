"""One diagnosis everywhere: a real `bench diagnose pooling` on SQLite, its terminal output,
its stored (= --json) diagnosis and its HTML report state the same verdicts and numbers,
each extracted from its own rendering.

Small on purpose (a few hundred records, two rounds): what is checked is agreement, not
speed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.cli.diagnose import default_workers
from bench.sweep import ensure_dataset

RECORDS = 400
BATCH = 100
REPEAT = 2
HEADING = re.compile(r"^\[(\d)/4\] (.+?) \((ok|warning|not run|error|INEFFECTIVE)\): (.*)$")


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Any]:
    """(terminal output, stored diagnosis, parsed HTML report) of one real diagnosis."""
    ensure_dataset(RECORDS)
    out = tmp_path_factory.mktemp("diagnosis") / "run"
    runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1"})
    res = runner.invoke(app, ["diagnose", "pooling", "--records", str(RECORDS),
                              "--batch-size", str(BATCH), "--workers", "1,2",
                              "--repeat", str(REPEAT), "--connections", "4",
                              "--sample-interval", "0.05", "--out", str(out)])
    assert res.exit_code == 0, res.output
    stored = json.loads((out / "result.json").read_text(encoding="utf-8"))["diagnose"]
    html = out / "report.html"
    rep = runner.invoke(app, ["report", str(out), "-o", str(html)])
    assert rep.exit_code == 0, rep.output
    return res.stdout, stored, lxml.html.parse(str(html))


def _terminal_headings(text: str) -> dict[int, tuple[str, str, str]]:
    found = {}
    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            found[int(m.group(1))] = (m.group(2), m.group(3), m.group(4))
    return found


def _terminal_after(text: str, prefix: str) -> list[str]:
    return [line.strip()[len(prefix):] for line in text.splitlines()
            if line.strip().startswith(prefix)]


def _section(page: Any) -> Any:
    found = page.find('.//section[@id="diagnosis"]')
    assert found is not None, "the report has no diagnosis section"
    return found


def _table(section: Any, caption_start: str) -> list[list[str]]:
    for table in section.iter("table"):
        caption = table.find("caption")
        if caption is not None and caption.text_content().startswith(caption_start):
            return [[c.text_content() for c in tr] for tr in table.find("tbody")]
    raise AssertionError(f"no table {caption_start!r}")


def _numbers(text: str) -> list[int]:
    return [int(x.replace(",", "")) for x in re.findall(r"\d[\d,]*", text)]


def test_the_test_verdicts_agree(diagnosed: tuple[str, dict[str, Any], Any]) -> None:
    terminal, stored, page = diagnosed
    term = _terminal_headings(terminal)
    marks = {"ok": "ok", "warning": "warning", "unavailable": "not run", "error": "error",
             "ineffective": "INEFFECTIVE"}
    from_json = {t["number"]: (t["title"], marks[t["status"]], t["verdict"])
                 for t in stored["tests"]}
    html = {}
    for p in _section(page).iter("p"):
        if p.get("class") == "test":
            m = HEADING.match(p.text_content())
            assert m, p.text_content()
            html[int(m.group(1))] = (m.group(2), m.group(3), m.group(4))
    assert term == from_json == html
    assert sorted(term) == [1, 2, 3, 4]
    # the bottleneck label is the one the tree read
    label = next(t for t in stored["tests"] if t["name"] == "bottleneck")["facts"][
        "bottleneck.label"]
    assert term[4][2].startswith(f"{label} — ")


def test_the_decision_and_recommendation_agree(
        diagnosed: tuple[str, dict[str, Any], Any]) -> None:
    terminal, stored, page = diagnosed
    rec = stored["recommendation"]
    assert rec["verdict"] == stored["decision"]["verdict"]
    assert _terminal_after(terminal, "verdict: ") == [rec["verdict"]]
    assert _terminal_after(terminal, "recommendation: ") == [rec["text"]]
    assert _terminal_after(terminal, "apply: ") == rec["apply"] and rec["apply"]
    assert _terminal_after(terminal, "why: ") == [rec["rationale"]]
    section = _section(page)
    head = next(p for p in section.iter("p") if p.get("class") == "recommendation")
    verdict, _, text = head.text_content().partition(". Recommendation: ")
    assert verdict.lower() == rec["verdict"].lower() and text == rec["text"]
    items = [li.text_content() for li in section.iter("li")]
    assert [i.removeprefix("apply: ") for i in items if i.startswith("apply: ")] == rec["apply"]
    why = [p.text_content() for p in section.iter("p") if p.text_content().startswith("Why: ")]
    assert why == [f"Why: {rec['rationale']}"]
    # the path: same nodes, in the same order, in all three
    nodes = [s["node"] for s in stored["decision"]["path"]]
    term_path = re.findall(r"^  \d+\. .* → (\w+)$", terminal, flags=re.M)
    assert term_path == nodes[1:]
    html_path = [row[1] for row in _table(section, "Path taken through the tree")]
    assert html_path == nodes
    # the recommendation names a configuration that was measured, and how to apply it
    config = rec["configuration"]
    assert config["strategy"] in stored["settings"]["strategies"]
    assert config["workers"] in stored["settings"]["workers"]
    assert rec["text"].startswith(("Use the default, ", "Use ")) and config["flags"] in rec["text"]
    assert rec["apply"][0] == f"bench run {config['flags']}"


def test_the_contention_numbers_agree_and_come_from_its_own_runs(
        diagnosed: tuple[str, dict[str, Any], Any]) -> None:
    terminal, stored, page = diagnosed
    contention = next(t for t in stored["tests"] if t["name"] == "contention")
    medians = {(int(r["workers"]), r["strategy"]): float(r["median"])
               for r in contention["details"]["table"]}
    assert {r["n"] for r in contention["details"]["table"]} == {REPEAT}  # its runs only
    # terminal: "rec/min (per-batch) 1: 311,266, 2: 157,769 · rec/min (pooled) …"
    term: dict[tuple[int, str], int] = {}
    for strategy, body in re.findall(r"rec/min \(([\w-]+)\) (.*?)(?: · |$)", terminal,
                                     flags=re.M):
        for w, value in re.findall(r"(\d+): (\d{1,3}(?:,\d{3})*)", body):
            term[(int(w), strategy)] = int(value.replace(",", ""))
    section = _section(page)
    html: dict[tuple[int, str], int] = {}
    runs = set()
    for row in _table(section, "Contention test, each configuration"):
        w, strategy = re.match(r"(\d+) workers?(?: \(oversubscribed\))?, ([\w-]+) connections",
                               row[0]).groups()  # type: ignore[union-attr]
        html[(int(w), strategy)] = _numbers(row[2])[0]
        runs.add(int(row[1]))
    assert term == html
    assert set(term) == set(medians)
    for key, value in medians.items():  # (shown rounded to the unit)
        assert abs(term[key] - value) <= 0.5, (key, term[key], value)
    assert runs == {REPEAT}
    # the numbers table of test 3 in the report is the terminal's numbers line
    items = _table(section, "Test 3 (Contention): measured numbers")
    line = next(x for x in terminal.splitlines() if x.startswith("      rec/min ("))
    assert line.strip() == " · ".join(f"{k} {v}" for k, v in items)
    # the stored runs: each tagged with its test, the contention runs one per round and
    # configuration, and the report's generic statistics do not pool them
    doc_runs = json.loads(Path(stored_path(page)).read_text(encoding="utf-8"))["runs"]
    by_test: dict[str, int] = {}
    for r in doc_runs:
        by_test[r["diagnose_test"]] = by_test.get(r["diagnose_test"], 0) + 1
    assert by_test == {"connection-cost": 1, "contention": REPEAT * len(medians),
                       "bottleneck": 1}
    assert page.find('.//section[@id="pooling"]') is None
    assert page.find('.//section[@id="throughput"]') is None


def stored_path(page: Any) -> str:
    """The result file the report was built from (its header names it)."""
    code = page.find(".//header//code")
    return str(Path(code.text_content()) / "result.json")


def test_default_workers_stop_at_the_clients_logical_cores() -> None:
    assert default_workers(2) == (1, 2)
    assert default_workers(1) == (1,)
    assert default_workers(16) == (1, 2, 4)
    assert default_workers(None) == (1,)
