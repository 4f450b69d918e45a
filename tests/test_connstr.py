"""ODBC connection strings: the grammar SQLDriverConnect reads, and redaction."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from migrator.connstr import (
    ConnectionStringError,
    format_connection_string,
    is_secret_key,
    parse_connection_string,
    redact_connection_string,
    redact_text,
    with_params,
)


def test_braced_values_with_escaped_braces_and_semicolons() -> None:
    p = parse_connection_string("Driver={PostgreSQL Unicode};Server=h;PWD={a;b}}c=d};Port=5")
    assert p["driver"] == "PostgreSQL Unicode"
    assert p["PWD"] == "a;b}c=d"
    assert p["port"] == "5"
    assert list(p) == ["Driver", "Server", "PWD", "Port"]


def test_keys_are_case_insensitive_and_the_first_occurrence_wins() -> None:
    p = parse_connection_string("uid=a;UID=b; Server = x ;;")
    assert p["Uid"] == "a" and "SERVER" in p and p["server"] == "x"
    assert p.get_any("Username", "Uid") == "a"
    assert len(p) == 2 and len(p.pairs) == 3


@pytest.mark.parametrize("bad", ["Driver={x;Server=y", "Server", "=x", "PWD={a}b"])
def test_malformed_strings_raise(bad: str) -> None:
    with pytest.raises(ConnectionStringError):
        parse_connection_string(bad)


@pytest.mark.parametrize("text, shown", [
    ("Driver={ODBC Driver 18 for SQL Server};Server=.\\SQLEXPRESS;UID=sa;PWD=Secr3t!",
     "Driver={ODBC Driver 18 for SQL Server};Server=.\\SQLEXPRESS;UID=sa;PWD=***"),
    ("Server=h;Password={p;w}}d};Database=mig", "Server=h;Password=***;Database=mig"),
    ("DSN=prod;pwd=x;ClientSecret=y;AccessToken=z", "DSN=prod;pwd=***;ClientSecret=***;"
     "AccessToken=***"),
    ("Server=h; Password = spaced ;", "Server=h; Password =***;"),
])
def test_redaction_masks_every_secret_and_keeps_the_rest(text: str, shown: str) -> None:
    assert redact_connection_string(text) == shown


def test_unparseable_strings_are_still_redacted() -> None:
    out = redact_connection_string("Driver={x};Server=a;PWD={abc;Server=y")
    assert "abc" not in out and out.endswith("PWD=***")


def test_secret_key_names() -> None:
    assert all(is_secret_key(k) for k in ["PWD", "password", "Pass", "MyAppPassword",
                                          "SSLPassword", "access_token", "api-key", "API_KEY",
                                          "Access-Key", "AccessKey"])
    assert not any(is_secret_key(k) for k in ["UID", "Server", "Database", "Driver"])


@pytest.mark.parametrize("text, shown", [
    ("connect failed (Driver={X};UID=sa;PWD=hunter2;Trusted=no)",
     "connect failed (Driver={X};UID=sa;PWD=***;Trusted=no)"),
    ("Password={a;b}}c};x=1", "Password=***;x=1"),
    ("api-key=abc, api_key = d; access_key=e", "api-key=***, api_key = ***; access_key=***"),
    ("MyAppPassword=x 'token=y' secret=z", "MyAppPassword=*** 'token=***' secret=***"),
    ("postgresql://bob:s3cret@db:5432/x or mysql://u:p@h/d",
     "postgresql://bob:***@db:5432/x or mysql://u:***@h/d"),
    ("batch_size=1000, pooling=on, UID=sa", "batch_size=1000, pooling=on, UID=sa"),
])
def test_secrets_inside_free_text_are_masked(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_with_params_replaces_case_insensitively_and_appends() -> None:
    out = with_params("Driver={A B};useserversideprepare=1;Uid=u", UseServerSidePrepare="0",
                      Protocol="7.4-1")
    assert out == "Driver=A B;useserversideprepare=0;Uid=u;Protocol=7.4-1"


values = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True)


@given(st.dictionaries(keys, values, max_size=6))
def test_format_then_parse_round_trips(pairs: dict[str, str]) -> None:
    # Keys compare as ConnectionParams looks them up (case, blanks and underscores ignored:
    # ``A0`` and ``a_0`` are one key), so only the first spelling of each goes in.
    seen: set[str] = set()
    items: list[tuple[str, str]] = []
    for k, v in pairs.items():
        norm = k.lower().replace("_", "")
        if norm not in seen:
            seen.add(norm)
            items.append((k, v))
    parsed = parse_connection_string(format_connection_string(items))
    assert [(k, parsed[k]) for k, _ in items] == items
    redacted = redact_connection_string(format_connection_string(items))
    for k, v in items:
        if is_secret_key(k) and len(v) > 3:
            assert f"{k}={v}" not in redacted
