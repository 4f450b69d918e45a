"""ODBC connection strings: parse, rebuild and redact.

The grammar is the one ``SQLDriverConnect`` reads: ``key=value`` pairs separated by ``;``;
keys are case-insensitive; a value may be wrapped in braces (``PWD={a;b=c}``) in which a
literal ``}`` is written ``}}``. When a key repeats, ODBC uses its first occurrence, so
:class:`ConnectionParams` does too — but :func:`redact_connection_string` masks every
occurrence of a secret, because every occurrence would be printed.

Redaction is used wherever a target may be shown or stored (result files, logs, errors,
``bench doctor``): ``PWD=s3cret`` → ``PWD=***``. It never fails: a string that does not
parse is still redacted by a forgiving fallback. :func:`redact_text` masks the same secrets
wherever they occur inside free text (an error message, a path, any string of a result
document), and the password of a URL (``postgresql://bob:s3cret@db/x``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

REDACTED = "***"

# Keys whose value is a secret, compared case-insensitively and without spaces/underscores.
SECRET_KEYS = frozenset({
    "pwd", "password", "passwd", "pass", "sslpassword", "secret", "clientsecret",
    "accesstoken", "token", "authenticationtoken", "apikey", "key", "authkey",
    "sslkeypassword", "keystorepassword", "keystoresecret", "truststorepassword",
    "columnencryptionkeystoresecret", "oauthsecret", "accesskey",
})
# Any key containing one of these words is a secret too (e.g. "MyAppPassword", "api-key").
_SECRET_WORDS = ("password", "passwd", "secret", "token", "pwd", "apikey", "accesskey")


class ConnectionStringError(ValueError):
    """The text is not a valid ODBC connection string (unbalanced braces, key without ``=``)."""


def _norm(key: str) -> str:
    return key.strip().lower().replace(" ", "").replace("_", "")


def is_secret_key(key: str) -> bool:
    k = _norm(key).replace("-", "")
    return k in SECRET_KEYS or any(w in k for w in _SECRET_WORDS)


class ConnectionParams(Mapping[str, str]):
    """The pairs of a connection string: case-insensitive lookup, original spelling and
    order kept for display; the first occurrence of a repeated key wins (as in ODBC)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs  # every pair as written, duplicates included
        self._first: dict[str, tuple[str, str]] = {}
        for k, v in pairs:
            self._first.setdefault(_norm(k), (k, v))

    def __getitem__(self, key: str) -> str:
        return self._first[_norm(key)][1]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._first.values())

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _norm(key) in self._first

    def get_any(self, *keys: str, default: str | None = None) -> str | None:
        """The value of the first of several synonyms present (``Server``, ``Servername`` …)."""
        for k in keys:
            if k in self:
                return self[k]
        return default

    def __repr__(self) -> str:
        return f"ConnectionParams({redact_pairs(self.pairs)!r})"


def parse_connection_string(text: str) -> ConnectionParams:
    """Parse ``Driver={PostgreSQL Unicode};Server=h;PWD={p;}}w}`` into its pairs.

    Raises :class:`ConnectionStringError` for an unterminated ``{`` or a segment with no
    ``=``. Empty segments (``;;``, a trailing ``;``) are ignored.
    """
    return ConnectionParams([(k, v) for k, v, _, _ in _scan(text)])


def _scan(text: str) -> list[tuple[str, str, int, int]]:
    """Every pair as ``(key, value, start, end)``; ``text[start:end]`` is the value as
    written (braces included), so redaction can replace it without touching the rest."""
    out: list[tuple[str, str, int, int]] = []
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] not in "=;":
            j += 1
        key = text[i:j].strip()
        if j >= n or text[j] == ";":
            if key:
                raise ConnectionStringError(f"segment {key!r} has no '=' (expected key=value)")
            i = j + 1
            continue
        if not key:
            raise ConnectionStringError(f"empty key before '=' at position {j}")
        j += 1  # past '='
        k = j
        while k < n and text[k] == " ":
            k += 1
        if k < n and text[k] == "{":
            start = k
            chars: list[str] = []
            k += 1
            while True:
                if k >= n:
                    raise ConnectionStringError(f"value of {key!r} has an unterminated '{{'")
                ch = text[k]
                if ch == "}":
                    if k + 1 < n and text[k + 1] == "}":
                        chars.append("}")
                        k += 2
                        continue
                    k += 1
                    break
                chars.append(ch)
                k += 1
            out.append((key, "".join(chars), start, k))
            while k < n and text[k] != ";":
                if not text[k].isspace():
                    raise ConnectionStringError(
                        f"unexpected text after the braced value of {key!r}")
                k += 1
            i = k + 1
        else:
            end = text.find(";", j)
            end = n if end < 0 else end
            out.append((key, text[j:end].strip(), j, end))
            i = end + 1
    return out


def quote_value(value: str) -> str:
    """A value as it must be written: braced when it holds ``;``, braces or edge spaces."""
    if value == "" or any(c in value for c in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def format_connection_string(pairs: Mapping[str, str] | list[tuple[str, str]]) -> str:
    items = pairs.pairs if isinstance(pairs, ConnectionParams) else (
        list(pairs.items()) if isinstance(pairs, Mapping) else pairs)
    return ";".join(f"{k}={quote_value(v)}" for k, v in items)


def redact_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, REDACTED if is_secret_key(k) else v) for k, v in pairs]


def redact_connection_string(text: str) -> str:
    """The connection string with every secret value replaced by ``***``; everything else
    stays exactly as written.

    A string that does not parse is never returned as is: from the first secret key on,
    everything is masked (a broken brace could hide where the secret ends).
    """
    try:
        spans = _scan(text)
    except ConnectionStringError:
        m = re.search(r"(?:^|;)\s*([^;=]+?)\s*=", text)
        pos = 0
        while m is not None:
            if is_secret_key(m.group(1)):
                return text[:m.end()] + REDACTED
            pos = m.end()
            m = re.compile(r";\s*([^;=]+?)\s*=").search(text, pos)
        return text
    out: list[str] = []
    last = 0
    for key, _value, start, end in spans:
        if is_secret_key(key):
            out.append(text[last:start])
            out.append(REDACTED)
            last = end
    out.append(text[last:])
    return "".join(out)


# A ``key=value`` pair inside free text: the value braced as in ODBC, or up to the next
# separator, quote or blank (text around it is not a connection string to parse).
_TEXT_PAIR = re.compile(r"(?<![\w-])([A-Za-z][\w-]*)(\s*=\s*)(\{(?:[^}]|\}\})*\}|[^;,\s\"']*)")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^:/@\s]+:)([^@/\s]+)(@)")


def redact_text(text: str) -> str:
    """``text`` with the value of every secret ``key=value`` pair (:func:`is_secret_key`;
    a braced value whole) and the password of every ``scheme://user:password@`` URL
    replaced by ``***``; everything else stays as written."""
    def pair(m: re.Match[str]) -> str:
        return f"{m.group(1)}{m.group(2)}{REDACTED}" if is_secret_key(m.group(1)) else m.group(0)

    text = _TEXT_PAIR.sub(pair, text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)


def with_params(text: str, **updates: str) -> str:
    """``text`` with keys set (replacing existing ones, case-insensitively) — e.g. to add
    ``UseServerSidePrepare=0`` for a measurement."""
    params = parse_connection_string(text)
    pending = {_norm(k): (k, v) for k, v in updates.items()}
    done: set[str] = set()
    out: list[tuple[str, str]] = []
    for k, v in params.pairs:
        nk = _norm(k)
        if nk in pending:
            if nk not in done:
                out.append((k, pending[nk][1]))
                done.add(nk)
            continue
        out.append((k, v))
    out.extend(kv for nk, kv in pending.items() if nk not in done)
    return format_connection_string(out)
