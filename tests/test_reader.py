"""The hardened streaming reader: inert entities, no DTD loading, file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.errors import InputError, MalformedXMLError
from migrator.reader import RecordStream, expand_inputs


def records(path: Path, tag: str = "order") -> list[tuple[int, str | None, str | None]]:
    return [(line, e.get("id"), e.findtext("v")) for line, e in RecordStream(str(path), tag)]


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def test_external_entity_is_not_expanded(tmp_path: Path) -> None:
    secret = write(tmp_path, "secret.txt", "TOP-SECRET")
    doc = write(tmp_path, "xxe.xml", f"""<?xml version="1.0"?>
<!DOCTYPE orders [<!ENTITY xxe SYSTEM "file://{secret}">
  <!ENTITY net SYSTEM "http://127.0.0.1:9/x">]>
<orders><order id="1"><v>&xxe;&net;</v></order></orders>""")
    texts = ["".join(e.itertext()) for _, e in RecordStream(str(doc), "order")]
    assert len(texts) == 1
    assert "TOP-SECRET" not in texts[0]


def test_billion_laughs_is_refused_not_expanded(tmp_path: Path) -> None:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    doc = write(tmp_path, "lol.xml", f"""<?xml version="1.0"?>
<!DOCTYPE orders [<!ENTITY l0 "lol">{lol}]>
<orders><order id="1"><v>&l9;</v></order></orders>""")
    # libxml2 stops at the entity amplification limit: a clear file:line error.
    with pytest.raises(MalformedXMLError, match=r"lol\.xml:\d+: malformed XML: .*amplification"):
        for _ in RecordStream(str(doc), "order"):
            pass


def test_missing_external_dtd_still_loads(tmp_path: Path) -> None:
    doc = write(tmp_path, "dtd.xml", """<?xml version="1.0"?>
<!DOCTYPE orders SYSTEM "missing.dtd">
<orders><order id="1"><v>a</v></order><order id="2"><v>b</v></order></orders>""")
    assert [r[1:] for r in records(doc)] == [("1", "a"), ("2", "b")]


def test_declared_encoding_is_honoured(tmp_path: Path) -> None:
    doc = write(tmp_path, "latin1.xml",
                '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
                '<orders><order id="1"><v>Zürich façade</v></order></orders>', "latin-1")
    assert records(doc)[0][2] == "Zürich façade"


def test_malformed_xml_names_file_and_line_after_good_records(tmp_path: Path) -> None:
    doc = write(tmp_path, "bad.xml", "<orders>\n<order id='1'><v>a</v></order>\n"
                "<order id='2'><v>b</v></order>\n<order id='3'><v>c</oops></order>\n</orders>")
    seen = []
    with pytest.raises(MalformedXMLError) as info:
        for _, elem in RecordStream(str(doc), "order"):
            seen.append(elem.get("id"))
    assert seen == ["1", "2"]
    assert info.value.line == 4
    assert str(info.value).startswith(f"{doc}:4: malformed XML")


def test_lines_point_at_record_start_tags(tmp_path: Path) -> None:
    doc = write(tmp_path, "l.xml", "<orders>\n  <order id='1'>\n<v>x</v>\n</order>\n"
                "  <!-- c -->\n  <order id='2'/>\n</orders>")
    assert [r[0] for r in records(doc)] == [2, 6]


def test_memory_is_released_while_streaming(tmp_path: Path) -> None:
    body = "".join(f"<order id='{i}'><v>{i}</v></order>" for i in range(2000))
    doc = write(tmp_path, "many.xml", f"<orders>{body}</orders>")
    most_kept = 0
    count = 0
    for _, elem in RecordStream(str(doc), "order"):
        count += 1
        kept = list(elem.itersiblings(preceding=True))
        most_kept = max(most_kept, len(kept))
        assert all(len(k) == 0 for k in kept)  # the one kept behind is already cleared
    assert count == 2000
    assert most_kept <= 1  # earlier records are deleted from the tree as we go


def test_expand_inputs_files_dirs_globs(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    a = write(tmp_path / "d", "a.xml", "<orders/>")
    b = write(tmp_path / "d" / "sub", "b.xml", "<orders/>")
    write(tmp_path / "d", "notes.txt", "x")
    assert [u.path for u in expand_inputs([str(tmp_path / "d")])] == [str(a), str(b)]
    assert [u.path for u in expand_inputs([str(tmp_path / "d" / "*.xml"), str(a)])] == [str(a)]
    assert expand_inputs([str(a)])[0].size == a.stat().st_size
    with pytest.raises(InputError, match="no such file or folder"):
        expand_inputs([str(tmp_path / "missing.xml")])
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.nothing")])
    with pytest.raises(InputError, match=r"no \.xml file"):
        expand_inputs([str(_empty_dir(tmp_path))])


def _empty_dir(tmp_path: Path) -> Path:
    p = tmp_path / "empty"
    p.mkdir()
    return p
