"""The HTML report: every kind of result file, sections, self-containment, escaping, size.

The fixtures in ``tests/data/results/`` are made by ``make_fixtures.py`` there: real runs of
`bench run`/`sweep`/`baseline`/`diagnose pooling` on the embedded default, and synthetic
documents (through the product's own writers) for what this machine cannot measure.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

from bench.cli import app
from migrator.connstr import redact_text
from reports import charts
from reports.report import build_report, load_documents, render_html, write_report
from reports.svg import figure_to_svg, normalise_tree, tree_svg

DATA = Path(__file__).parent / "data" / "results"

#: fixture → sections its report must have (ids of <section> elements)
EXPECTED: dict[str, set[str]] = {
    "run": {"summary", "timelines", "bottleneck", "stages", "environment", "raw-data"},
    "sweep": {"summary", "configurations", "throughput", "run-order", "stages",
              "environment", "raw-data"},
    "baseline": {"summary", "run-order", "stages", "environment", "raw-data"},
    "sweep_grid": {"summary", "configurations", "throughput", "scaling", "connection",
                   "bottleneck", "timelines", "run-order", "stages", "environment",
                   "raw-data"},
    "sweep_modes": {"summary", "configurations", "pipeline", "insert-methods", "run-order",
                    "environment", "raw-data"},
    "compare": {"summary", "compare", "raw-data"},
    # a diagnosis is shown from the stored diagnosis alone: its runs belong to four tests
    # and are not pooled into the generic statistics
    "diagnose": {"summary", "diagnosis", "environment", "raw-data"},
    "diagnose_sqlite": {"summary", "diagnosis", "environment", "raw-data"},
    "hostile": {"summary", "decision-tree", "timelines", "environment", "raw-data"},
}

HOSTILE_MARKUP = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {name: render_html(build_report(load_documents([DATA / f"{name}.json"])))
            for name in EXPECTED}


def _sections(html: str) -> set[str]:
    tree = lxml.html.fromstring(html)
    return {s.get("id") for s in tree.iter("section")}


def test_an_old_pooling_sweep_is_labelled_with_connection_strategies(
        rendered: dict[str, str]) -> None:
    """sweep_grid.json swept ``pooling`` on/off (schema 1): its report names the strategies."""
    section = lxml.html.fromstring(rendered["sweep_grid"]).get_element_by_id("connection")
    text = section.text_content()
    assert "connection=per-batch" in text and "connection=pooled" in text
    assert "pooling=" not in rendered["sweep_grid"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_kind_renders_its_sections(rendered: dict[str, str], name: str) -> None:
    assert EXPECTED[name] <= _sections(rendered[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_chart_has_a_data_table_and_every_section_a_title(rendered: dict[str, str],
                                                                name: str) -> None:
    tree = lxml.html.fromstring(rendered[name])
    for section in tree.iter("section"):
        assert section.find("h2") is not None and section.find("h2").text_content().strip()
        for figure in section.iter("figure"):
            following = figure.getnext()
            while following is not None and following.tag != "div":
                following = following.getnext()
            assert following is not None and following.find(".//table") is not None, (
                f"{name}: a chart in #{section.get('id')} has no data table after it")
            assert figure.find("figcaption") is not None


_URL_ATTRS = ("src", "href", "{http://www.w3.org/1999/xlink}href", "xlink:href", "action",
              "poster", "data", "srcset", "formaction", "background")


def _external_references(html: str) -> list[str]:
    """Every reference that would make a browser fetch something."""
    tree = lxml.html.fromstring(html)
    found: list[str] = []
    for el in tree.iter():
        if not isinstance(el.tag, str):
            continue
        for attr in _URL_ATTRS:
            value = el.get(attr)
            if value is not None and not value.startswith("#"):
                found.append(f"<{el.tag} {attr}={value!r}>")
        style = el.get("style") or ""
        found += [m for m in re.findall(r"url\(\s*['\"]?([^)'\"]*)", style)
                  if not m.startswith("#")]
        if el.tag in ("link", "img", "iframe", "object", "embed", "audio", "video", "base"):
            found.append(f"<{el.tag}>")
        if el.tag == "script" and el.get("type") != "application/json":
            found.append("<script> that executes")
    for style in tree.iter("style"):
        text = style.text or ""
        found += [m for m in re.findall(r"url\(\s*['\"]?([^)'\"]*)", text) if
                  not m.startswith("#")]
        if "@import" in text:
            found.append("@import")
    return found


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_external_reference_anywhere(rendered: dict[str, str], name: str) -> None:
    html = rendered[name]
    assert _external_references(html) == []
    assert "<!DOCTYPE svg" not in html  # matplotlib's DOCTYPE names an external DTD
    assert "Content-Security-Policy" in html  # and the browser is told to fetch nothing


def test_hostile_values_render_as_text(rendered: dict[str, str]) -> None:
    html = rendered["hostile"]
    tree = lxml.html.fromstring(html)
    scripts = list(tree.iter("script"))
    assert [s.get("type") for s in scripts] == ["application/json"]
    assert not list(tree.iter("img"))
    text = tree.text_content()
    assert HOSTILE_MARKUP in text  # shown, as text
    assert "http://evil.example" in text
    assert not any(el.get("onerror") for el in tree.iter() if isinstance(el.tag, str))
    # inside SVG too: charts and the tree escape what they print
    for svg in tree.iter("svg"):
        assert not list(svg.iter("script"))


def test_secrets_never_appear(rendered: dict[str, str]) -> None:
    for name, html in rendered.items():
        assert "hunter2" not in html, name
        assert "s3cr" not in html, name
    assert "PWD=***" in rendered["hostile"]


def test_raw_results_are_embedded_and_round_trip(rendered: dict[str, str]) -> None:
    for name in ("run", "hostile", "diagnose"):
        tree = lxml.html.fromstring(rendered[name])
        (script,) = tree.xpath('//script[@id="raw-results"]')
        payload = json.loads(script.text)
        assert payload["format"] == "migration-bench.report/1"
        original = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
        embedded = payload["results"][0]
        assert embedded["kind"] == original["kind"]
        assert len(embedded["runs"]) == len(original["runs"])
    hostile = json.loads(lxml.html.fromstring(rendered["hostile"]).xpath(
        '//script[@id="raw-results"]')[0].text)
    assert HOSTILE_MARKUP in hostile["results"][0]["environment"]["host"]
    assert "</script>" not in rendered["hostile"].split('id="raw-results">', 1)[1].split(
        "</script>", 1)[0]


def test_full_sweep_report_is_small(tmp_path: Path) -> None:
    out = write_report([DATA / "sweep_grid.json"], tmp_path / "report.html")
    size = out.stat().st_size
    assert size < 2_000_000, f"{size / 1e6:.2f} MB"
    html = out.read_text(encoding="utf-8")
    # 108 sampled runs: only the drawn ones keep their series in the embedded copy
    assert "left out of this embedded copy" in html


def test_summary_states_the_verdicts(rendered: dict[str, str]) -> None:
    grid = lxml.html.fromstring(rendered["sweep_grid"]).get_element_by_id("summary")
    text = " ".join(grid.text_content().split())
    assert "best: batch_size=" in text.lower()
    assert "diminishing returns beyond" in text.lower() or "no knee" in text.lower()
    assert "vs baseline" in text and "Bottleneck:" in text
    diag = " ".join(lxml.html.fromstring(rendered["diagnose"]).get_element_by_id(
        "summary").text_content().split())
    assert "Pooling diagnosis (I/O-bound" in diag
    assert "disable pooling" in diag and "--workers 4 --connection per-batch" in diag
    assert "[3/4] Contention (warning): 8 workers reach 28% of ideal scaling: workers do " \
           "not scale" in diag


def test_decision_tree_highlights_the_path(rendered: dict[str, str]) -> None:
    tree = lxml.html.fromstring(rendered["diagnose"])
    svg = tree.xpath('//section[@id="diagnosis"]//*[local-name()="svg"]')
    svg = next(s for s in svg if any(g.get("data-node") for g in s.iter()))
    on_path = [g.get("data-node") for g in svg.iter() if "on-path" in (g.get("class") or "")]
    assert on_path == ["config", "strategy_gain", "connect_cost", "scaling", "saturation",
                       "io_bound"]
    drawn = {g.get("data-node") for g in svg.iter() if g.get("data-node")}
    stored = json.loads((DATA / "diagnose.json").read_text(encoding="utf-8"))
    assert drawn == {n["id"] for n in stored["diagnose"]["decision"]["nodes"]}  # whole tree


def test_several_files_make_one_report(tmp_path: Path) -> None:
    out = write_report([DATA / "sweep.json", DATA / "baseline.json", DATA / "compare.json"],
                       tmp_path / "r.html")
    sections = _sections(out.read_text(encoding="utf-8"))
    assert {"summary", "compare", "throughput", "environment"} <= sections


def test_a_document_without_runs_still_renders(tmp_path: Path) -> None:
    doc = json.loads((DATA / "run.json").read_text(encoding="utf-8"))
    doc["runs"] = []
    doc.pop("verdicts", None)
    html = render_html(build_report([doc]))
    assert "hold no measured run" in html
    assert {"summary", "environment"} <= _sections(html)


def test_run_counts_show_the_pipeline_split_and_the_host_probe() -> None:
    doc = json.loads((DATA / "run.json").read_text(encoding="utf-8"))
    metrics = doc["runs"][0]["metrics"]
    metrics.update(pipeline="process", overlap_efficiency=1.6, read_map_cpu_s=1.234,
                   converted_by_inserter=metrics["records_read"] // 4)
    html = render_html(build_report([doc]))
    cells = [" ".join(td.text_content().split())
             for td in lxml.html.fromstring(html).iter("th", "td")]
    at = cells.index("records converted by the inserter")
    assert cells[at + 1] == "25%"
    at = cells.index("read+map CPU (s), the host-speed probe")
    assert cells[at + 1] == "1.234"


def test_redact() -> None:
    assert redact_text("Driver={X};Server=s;UID=u;PWD=hunter2;Trusted=no") == \
        "Driver={X};Server=s;UID=u;PWD=***;Trusted=no"
    assert redact_text("Password={a;b}}c};x=1") == "Password=***;x=1"
    assert redact_text("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact_text("nothing secret") == "nothing secret"


# --------------------------------------------------------------------------- charts & svg


def test_chart_functions_return_labelled_figures() -> None:
    figs: list[Figure] = [
        charts.throughput_chart([charts.Curve("workers=1", [50, 100, 1000], [10, 20, 25],
                                              [8, 18, 22], [12, 22, 28], [[9, 11]] * 3,
                                              knee=100, best=1000)]),
        charts.worker_scaling_chart([1, 2, 4], [10, 18, 25], [9, 17, None], [11, 19, None],
                                    [10, 20, 40]),
        charts.bar_chart(charts.Bars("t", ["a", "b"], ["on", "off"], [[1, 2], [3, None]],
                                     secondary=[[50, None], [70, 80]], secondary_label="%")),
        charts.change_chart(["a"], [-5.0], [-8.0], [-2.0], ["+"], 5.0),
        charts.run_order_chart({"a": [(1, 5.0), (3, 6.0)], "b": [(2, 5.5)]}),
        charts.timeline_chart("t", [charts.Panel("x (u)", [charts.Trace("s", [0, 1], [1, None])],
                                                 "r", [charts.Trace("r", [0, 1], [5, 6])])],
                              [0.5], 1.0),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        axes = fig.get_axes()
        assert axes
        main = axes[0]
        assert main.get_title(loc="left") or fig.get_suptitle()
        assert main.get_ylabel()
        svg = figure_to_svg(fig, title="t")
        assert svg.startswith("<svg") and "DOCTYPE" not in svg and "<?xml" not in svg
        assert 'class="chart"' in svg


def test_figure_ids_do_not_collide() -> None:
    a = figure_to_svg(charts.run_order_chart({"a": [(1, 5.0)]}))
    b = figure_to_svg(charts.run_order_chart({"a": [(1, 5.0)]}))
    ids_a = set(re.findall(r'id="([^"]+)"', a))
    ids_b = set(re.findall(r'id="([^"]+)"', b))
    assert ids_a and not ids_a & ids_b


def test_minimal_tree_interface() -> None:
    doc: dict[str, Any] = {
        "nodes": [{"id": "q", "question": "<b>cheap?</b>", "children": {"yes": "a", "no": "b"}},
                  {"id": "a", "recommendation": "keep off"},
                  {"id": "b", "leaf": {"recommendation": "turn on"}}],
        "path": ["q", "b"],
    }
    view = normalise_tree(doc)
    assert view is not None and view.root == "q"
    assert view.outcome is not None and view.outcome.recommendation == "turn on"
    assert view.answers["q"] == "no"
    svg = tree_svg(view)
    assert "&lt;b&gt;cheap?&lt;/b&gt;" in svg and "<b>" not in svg
    assert svg.count('class="node on-path"') == 2
    assert normalise_tree({"nodes": []}) is None


# --------------------------------------------------------------------------- the command


def test_bench_report_command(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out" / "r.html"
    result = runner.invoke(app, ["report", str(DATA / "run.json"), str(DATA / "diagnose.json"),
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "report:" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["report", str(bad), "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 1
    assert "bad.json" in result.output


#: Strings that end a <script> element, open or close comments and CDATA, or break naive JSON.
HOSTILE_STRINGS = ["</script><script>alert(1)</script>", "</SCRIPT >", "<!--", "-->",
                   "]]>", "<![CDATA[x]]>", "<\\!--", "a&amp;b&lt;c", '"dq" \'sq\' \\bs\\',
                   "line\u2028sep\u2029para", "Ünïcödé 東京 😀 \u0000 \t\n"]


def test_embedded_raw_data_is_valid_json_for_any_content() -> None:
    from reports.results import read_raw

    doc = read_raw(DATA / "v2_run.json")
    folder = "/data/" + "".join(HOSTILE_STRINGS).replace("\u0000", "")
    doc["config"]["inputs"] = [f"{folder}/orders.xml", *HOSTILE_STRINGS]
    doc["environment"]["host"] = HOSTILE_STRINGS[0]
    doc["environment"]["packages"] = {s: s for s in HOSTILE_STRINGS}
    doc["runs"][0]["metrics"]["errors"] = list(HOSTILE_STRINGS)
    doc["error"] = HOSTILE_STRINGS[2]
    html = render_html(build_report([doc]))
    head = '<script type="application/json" id="raw-results">'
    assert html.count(head) == 1
    raw = html.split(head, 1)[1].split("</script>", 1)[0]
    # Nothing in the block can end it, open a comment or CDATA section, or be an entity.
    assert not set(raw) & {"<", ">", "&", "\u2028", "\u2029"}
    payload = json.loads(raw)  # valid JSON as embedded, not after unescaping
    assert payload["results"] == [json.loads(json.dumps(doc))]
    # An HTML parser finds the same text in the element.
    (script,) = lxml.html.fromstring(html).xpath('//script[@id="raw-results"]')
    assert json.loads(script.text) == payload


def test_lock_holders_are_listed_under_the_bottleneck() -> None:
    doc = json.loads((DATA / "run.json").read_text(encoding="utf-8"))
    run = doc["runs"][0]
    run["bottleneck"] = {**doc["verdicts"][0], "label": "lock-contention",
                         "blockers": [{"session": "4711", "id_label": "pid",
                                       "application": "nightly-report", "user": "etl",
                                       "object": "table orders",
                                       "held_mode": "AccessExclusiveLock", "samples": 19,
                                       "transaction_start": "2026-12-01 14:41:00 UTC",
                                       "query": "LOCK TABLE orders"}]}
    html = render_html(build_report([doc]))
    cells = [" ".join(td.text_content().split())
             for td in lxml.html.fromstring(html).iter("th", "td")]
    at = cells.index("pid 4711")
    assert cells[at:at + 8] == ["pid 4711", "nightly-report", "etl", "table orders",
                                "AccessExclusiveLock", "19", "2026-12-01 14:41:00 UTC",
                                "LOCK TABLE orders"]


# --------------------------------------------------------------------------- chart fixes


def test_bar_labels_keep_their_precision() -> None:
    assert [charts.value_label(v) for v in (0.24, 0.0031, 12.34, 0, 640_000)] == \
        ["0.24", "0.0031", "12.3", "0", "640k"]
    fig = charts.bar_chart(charts.Bars("Time per stage", ["parse", "map", "insert"],
                                       ["seconds"], [[0.24, 1.5, 0.003]], ylabel="time (s)"))
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", figure_to_svg(fig))
    assert "0.24" in texts and "0.003" in texts and "1.5" in texts


def test_the_knee_is_the_dotted_line_its_caption_names() -> None:
    fig = charts.throughput_chart([charts.Curve("all", [50, 500, 2000], [10, 24, 25],
                                                [9, 23, 24], [11, 25, 26], knee=500,
                                                best=2000)])
    ax = fig.get_axes()[0]
    knees = [line for line in ax.get_lines() if line.get_label() == "knee"]
    assert len(knees) == 1 and knees[0].get_linestyle() == ":"
    assert list(knees[0].get_xdata()) == [500, 500]  # vertical, at the knee
    html = render_html(build_report(load_documents([DATA / "sweep.json"])))
    assert "dotted line: knee" in html


def test_titles_stay_inside_their_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from reports import report as report_module

    checked: list[str] = []
    real = report_module.figure_to_svg

    def measuring(fig: Figure, **kw: Any) -> str:
        svg = real(fig, **kw)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        titles = [t for ax in fig.get_axes() for t in (ax.title, ax._left_title)]
        if fig._suptitle is not None:  # type: ignore[attr-defined]
            titles.append(fig._suptitle)  # type: ignore[attr-defined]
        for title in titles:
            if title.get_text():
                box = title.get_window_extent(renderer)
                assert fig.bbox.x0 - 1 <= box.x0 and box.x1 <= fig.bbox.x1 + 1, \
                    title.get_text()
                checked.append(title.get_text())
        return svg

    monkeypatch.setattr(report_module, "figure_to_svg", measuring)
    for name in ("sweep_grid", "compare"):  # the longest labels, the widest tick labels
        render_html(build_report(load_documents([DATA / f"{name}.json"])))
    assert any(t.startswith("Time per stage, median run of") and "\n" in t for t in checked)


def test_a_single_sample_is_not_drawn_as_a_timeline() -> None:
    doc = json.loads((DATA / "run.json").read_text(encoding="utf-8"))
    run = doc["runs"][0]
    samples = run["samples"]
    samples["t"] = samples["t"][:2]
    samples["metrics"] = {k: [None, v[1] if len(v) > 1 else None]
                          for k, v in samples["metrics"].items()}
    html = render_html(build_report([doc]))
    section = lxml.html.fromstring(html).get_element_by_id("timelines")
    assert not list(section.iter("figure"))
    assert "too few samples for a timeline" in section.text_content()


def test_run_order_shows_the_hosts_level_shift() -> None:
    from bench.results import build_result
    from reports.summary import summarize_sweep

    configs = [{"batch_size": 200}, {"batch_size": 2000}]
    runs: list[dict[str, Any]] = []
    for round_ in range(20):
        host = (1.0 if round_ < 12 else 2.5) * (1 + 0.01 * ((round_ * 7) % 5))
        for index in (round_ % 2, 1 - round_ % 2):
            value = 200_000.0 * host * (1.3 if index else 1.0)
            runs.append({"order_index": len(runs), "round": round_, "config_index": index,
                         "warmup": False, "sequence": len(runs), "config": configs[index],
                         "metrics": {"throughput_rec_per_min": value, "elapsed_s": 1.0}})
    groups = [[r for r in runs if r["config_index"] == i] for i in range(2)]
    summary = summarize_sweep([(c, [r["metrics"]["throughput_rec_per_min"] for r in g])
                               for c, g in zip(configs, groups, strict=True)],
                              rounds=[[r["round"] for r in g] for g in groups])
    doc = build_result("sweep", config={"configurations": configs}, environment={},
                       runs=runs, extra={"summary": summary.to_dict()})
    html = render_html(build_report([doc]))
    text = " ".join(lxml.html.fromstring(html).get_element_by_id("run-order")
                    .text_content().split())
    assert "The host changed speed at round 13: runs after it are +" in text
    assert "comparisons within rounds are unaffected" in text
    assert "the host's level shift at round 13" in text  # the drift table says so too
    assert "(paired comparisons unaffected)" not in text
    assert "dashed line: the host's level shift" in text
