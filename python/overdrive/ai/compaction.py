"""Prompt compaction: deterministic transforms with measured savings.

``compact(text)`` runs a chain of transforms over a prompt and reports, for
each, the tokens it saved (counted by a pluggable token counter) and whether
it lost anything. Nothing is downloaded and nothing random happens: the same
input always gives the same output.

The transforms (each a :class:`Transform` with a ``name`` and a ``lossless``
claim; calling one on a text returns a :class:`Step`):

=====================  ========  ==================================================
transform              lossless  what "lossless" means (what is provably kept)
=====================  ========  ==================================================
``minify_json``        yes       only whitespace between tokens is removed; every
                                 token (numbers as written, strings with their
                                 escapes, duplicate keys) is kept verbatim, so
                                 each block parses to exactly what it did
``xml_to_json``        yes       an XML data block is replaced by JSON only when
                                 that JSON converts back to an *equivalent* XML
                                 tree (same tags, attributes, children in order,
                                 leaf text byte-exact; indentation between
                                 elements ignored); blocks with mixed content,
                                 comments, processing instructions, namespaces or
                                 repeated tags out of order are left as XML.
                                 ``<!DOCTYPE``/``<!ENTITY`` are refused (XML bombs).
``normalize_whitespace``  yes    prose only: every line keeps its indentation
                                 and its words in order; runs of spaces become
                                 one; blank-line runs become one blank line;
                                 trailing spaces go (a CR stays). Lines holding
                                 a tab (tab-separated data) or indented by four
                                 spaces (code), fenced code, ``<pre>``, inline
                                 code and JSON/XML blocks are byte-identical.
                                 (Column alignment made of spaces is not kept.)
``dedupe_paragraphs``  no        removes later exact copies of a paragraph
``dedupe_lines``       no        removes later exact copies of a line (prose lines
                                 of at least ``min_chars`` characters)
=====================  ========  ==================================================

``compact`` runs :data:`LOSSLESS` by default (so ``Compacted.lossless`` is
True unless a budget trimmed the text); pass ``transforms=ALL`` (or your own
sequence) to add the lossy ones. With ``budget_tokens`` the result is cut to
the budget by the trimmer: the system part and the latest turns are kept
(see :func:`trim_text` and, for a list of ``{"role", "content"}`` messages,
:func:`trim_messages`).

The default token counter, :func:`approx_tokens`, is a regex approximation of
a BPE tokenizer (letters in runs of up to 6, digits in runs of up to 3, one
token per one or two punctuation marks, per line break with its indentation and per run
of spaces); any ``counter(text) -> int`` can replace it, e.g.
``lambda s: len(enc.encode(s))`` with a tiktoken encoding.
"""

from __future__ import annotations

import json
import math
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import ConfigurationError, InputTypeError

__all__ = [
    "ALL",
    "LOSSLESS",
    "Compacted",
    "CompactedMessages",
    "Step",
    "Transform",
    "approx_tokens",
    "compact",
    "compact_messages",
    "dedupe_lines",
    "dedupe_paragraphs",
    "json_to_xml",
    "make_dedupe_lines",
    "messages_tokens",
    "minify_json",
    "normalize_whitespace",
    "parse_xml",
    "trim_messages",
    "trim_text",
    "xml_to_data",
    "xml_to_json",
]

Counter = Callable[[str], int]

# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(r"[^\W\d_]{1,6}|\d{1,3}|\s*\n\s*|[ \t]{2,}|\t|[^\w\s]{1,2}|\S")


def approx_tokens(text: str) -> int:
    """An approximate BPE token count of ``text`` (no vocabulary, no download).

    Letters count one token per run of up to 6, digits per run of up to 3,
    punctuation one per run of up to 2 (BPE merges ``":`` and ``</``), a
    line break together with the whitespace around it one, a run of two or
    more spaces one; a single space is free (BPE merges it into the next
    word). It is a heuristic, not calibrated against a real vocabulary: use
    your model's tokenizer through ``counter=`` when the exact number
    matters."""
    if not isinstance(text, str):
        raise InputTypeError(f"text must be a str, not {type(text).__name__}")
    return _TOKEN.subn("", text)[1]  # counts without building a list of matches


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Step:
    """What one transform did: its name, whether this application lost
    nothing, the tokens and characters before and after, how many blocks (or
    lines, paragraphs, turns) it changed, and notes (e.g. why an XML block was
    left as XML). ``text`` is the transform's output."""

    transform: str
    lossless: bool
    tokens_before: int
    tokens_after: int
    chars_before: int
    chars_after: int
    changed: int = 0
    notes: tuple[str, ...] = ()
    text: str = field(default="", repr=False)

    @property
    def saved_tokens(self) -> int:
        """``tokens_before - tokens_after``."""
        return self.tokens_before - self.tokens_after

    @property
    def saved_ratio(self) -> float:
        """Tokens saved as a fraction of ``tokens_before`` (0.0 for an empty text)."""
        return self.saved_tokens / self.tokens_before if self.tokens_before else 0.0


@dataclass(frozen=True)
class Compacted:
    """The result of :func:`compact`: the compacted ``text``, the token counts
    before and after, whether every step was lossless, and each step's
    measured savings (``steps``, in order; the budget trimmer is the last step
    when it ran)."""

    text: str
    tokens_before: int
    tokens_after: int
    lossless: bool
    steps: tuple[Step, ...] = ()

    @property
    def saved_tokens(self) -> int:
        """``tokens_before - tokens_after``."""
        return self.tokens_before - self.tokens_after

    @property
    def saved_ratio(self) -> float:
        """Tokens saved as a fraction of ``tokens_before`` (0.0 for an empty text)."""
        return self.saved_tokens / self.tokens_before if self.tokens_before else 0.0

    @property
    def savings(self) -> dict[str, int]:
        """Tokens saved by each step, by transform name."""
        return {s.transform: s.saved_tokens for s in self.steps}


@dataclass(frozen=True)
class CompactedMessages:
    """The result of :func:`compact_messages` (and :func:`trim_messages`): the
    kept ``messages`` (new dicts; the input is not modified), token counts by
    :func:`messages_tokens`, whether nothing was lost, and ``dropped``: how
    many messages the budget removed."""

    messages: list[dict[str, Any]]
    tokens_before: int
    tokens_after: int
    lossless: bool
    dropped: int = 0
    steps: tuple[Step, ...] = ()

    @property
    def saved_tokens(self) -> int:
        """``tokens_before - tokens_after``."""
        return self.tokens_before - self.tokens_after


# --------------------------------------------------------------------------- segments

# A segment is (kind, text): "prose", "code" (fenced block or <pre>), "json", "xml".
_Seg = tuple[str, str]

_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n", re.M)
_PRE_OPEN = re.compile(r"^[ \t]*<pre\b[^>\n]*>", re.I | re.M)
_PRE_CLOSE = re.compile(r"</pre\s*>", re.I)
_XML_START = re.compile(
    r"[ \t]*(?:<\?xml[^>\n]*\?>\s*)?(?:<!DOCTYPE[^\[>\n]*(?:\[[^\]]{0,65536}\])?[^>\n]*>\s*)?"
    r"<([A-Za-z_][\w.\-]*)[\s>/]",
    re.I,
)
_JSON_START = re.compile(r"\{[ \t\r\n]*[\"}]|\[[ \t\r\n]*[\[\]{\"\-0-9tfn]")
_LINE_END = re.compile(r"[ \t]*(?:\n|\Z)")
_decoder = json.JSONDecoder()


def _protected(text: str) -> list[_Seg]:
    """Split off fenced code blocks and ``<pre>`` blocks (kind ``code``).

    Linear: each search resumes where the last one stopped, and a ``<pre>``
    with no ``</pre>`` after it means no later one closes either."""
    out: list[_Seg] = []
    pos = 0
    n = len(text)
    fence: re.Match[str] | None = None
    pre: tuple[int, int] | None = None
    fence_done = pre_done = False
    while pos < n:
        if not fence_done and (fence is None or fence.start() < pos):
            fence = _FENCE.search(text, pos)
            fence_done = fence is None
        if not pre_done and (pre is None or pre[0] < pos):
            pre = None
            o = _PRE_OPEN.search(text, pos)
            if o is None:
                pre_done = True
            else:
                c = _PRE_CLOSE.search(text, o.end())
                if c is None:
                    pre_done = True
                else:
                    pre = (o.start(), c.end())
        f = None if fence_done else fence
        q = None if pre_done else pre
        if f is None and q is None:
            break
        if q is not None and (f is None or q[0] < f.start()):
            out.append(("prose", text[pos : q[0]]))
            out.append(("code", text[q[0] : q[1]]))
            pos = q[1]
            continue
        assert f is not None
        marker = f.group(1)
        close = re.compile(
            r"^[ \t]{0,3}" + re.escape(marker[0]) + "{" + str(len(marker)) + ",}[ \t]*$", re.M
        )
        end_m = close.search(text, f.end())
        end = n if end_m is None else end_m.end()
        out.append(("prose", text[pos : f.start()]))
        out.append(("code", text[f.start() : end]))
        pos = end
    out.append(("prose", text[pos:]))
    return [s for s in out if s[1]]


def _data_blocks(text: str) -> list[_Seg]:
    """Split a prose region into ``prose``, ``json`` and ``xml`` blocks.

    A JSON block is an object or array that starts a line and ends one; an XML
    block starts a line with ``<tag`` (optionally after an XML declaration
    and a DOCTYPE) and ends a line with the matching ``</tag>``. Linear in
    the text: a JSON attempt that fails (or ends mid-line) is not retried
    inside the span it covered, and XML elements are matched once per tag."""
    out: list[_Seg] = []
    pos = 0  # start of the pending prose
    line = 0  # start of the line being looked at
    skip_to = 0  # JSON attempts are not retried inside spans already scanned
    ends: dict[str, dict[int, int]] = {}
    n = len(text)
    while line < n:
        nl = text.find("\n", line)
        next_line = n if nl < 0 else nl + 1
        i = line
        while i < next_line and text[i] in " \t":
            i += 1
        ch = text[i] if i < n else ""
        end = -1
        kind = ""
        if ch in "{[" and i >= skip_to and _JSON_START.match(text, i):
            j = _json_end(text, i, next_line)
            if j < 0:
                skip_to = max(-j, next_line)
            else:
                m = _LINE_END.match(text, j)
                if m is not None and j - i > 2:
                    end, kind = m.end(), "json"
                else:
                    skip_to = j
        elif ch == "<":
            m = _XML_START.match(text, line)
            if m is not None:
                tag = m.group(1)
                table = ends.get(tag)
                if table is None:
                    table = ends[tag] = _element_ends(text, tag)
                close = table.get(m.start(1) - 1, -1)
                if close > 0:
                    e = _LINE_END.match(text, close)
                    if e is not None:
                        end, kind = e.end(), "xml"
        if end > 0:
            if line > pos:
                out.append(("prose", text[pos:line]))
            out.append((kind, text[line:end]))
            pos = line = end
            continue
        line = next_line
    if pos < n:
        out.append(("prose", text[pos:]))
    return out


def _json_end(text: str, i: int, line_end: int) -> int:
    """Where the JSON value starting at ``text[i]`` ends, or ``-pos`` where
    parsing failed. Parses a window that doubles while the failure may be
    the window's cut, so a failure costs what was scanned, not the whole text
    (JSONDecodeError counts the lines before its position)."""
    n = len(text)
    size = max(16384, line_end - i)
    while True:
        stop = min(n, i + size)
        window = text[i:stop]
        try:
            _value, j = _decoder.raw_decode(window)
        except json.JSONDecodeError as exc:
            cut = stop < n and (
                exc.pos >= len(window) - 1 or exc.msg.startswith("Unterminated string")
            )
            if not cut:
                return -(i + max(exc.pos, 1))
            size *= 2
            continue
        except RecursionError:
            return -line_end
        return i + j


def _element_ends(text: str, tag: str) -> dict[int, int]:
    """For every ``<tag ...>`` in ``text``: the end of its matching
    ``</tag>`` (nested same-name elements counted; a self-closing tag is its
    own end). Unclosed elements are absent. One pass with a stack."""
    pat = re.compile(r"<(/?)" + re.escape(tag) + r"(?=[\s/>])[^>]*?(/?)>")
    stack: list[int] = []
    out: dict[int, int] = {}
    for m in pat.finditer(text):
        if m.group(1):
            if stack:
                out[stack.pop()] = m.end()
        elif m.group(2):
            out[m.start()] = m.end()
        else:
            stack.append(m.start())
    return out


_last: tuple[str, list[_Seg]] = ("", [])
_MEMO_MAX_CHARS = 1 << 16  # the one-entry memo never pins a large prompt in memory


def _segments(text: str) -> list[_Seg]:
    """The text's segments; the last result is reused when the same string
    comes again (each transform of a chain that changed nothing passes it on).
    """
    global _last
    last = _last  # one read: another thread may replace it
    if last[0] is text:
        return last[1]
    segs: list[_Seg] = []
    for kind, part in _protected(text):
        if kind == "code":
            segs.append((kind, part))
        else:
            segs.extend(_data_blocks(part))
    _last = (text, segs) if len(text) <= _MEMO_MAX_CHARS else ("", [])
    return segs


# --------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class _Out:
    text: str
    lossless: bool
    changed: int = 0
    notes: tuple[str, ...] = ()


class Transform:
    """A named, deterministic text transform with a ``lossless`` claim.

    ``lossless`` is the claim for every application (True: the original's
    information is kept, up to the equivalence the transform documents);
    :attr:`Step.lossless` says what one application did. Call it on a text to
    get a :class:`Step` (``counter`` counts the tokens before and after)."""

    def __init__(self, name: str, lossless: bool, func: Callable[[str], _Out], doc: str) -> None:
        self.name = name
        self.lossless = lossless
        self._func = func
        self.__doc__ = doc

    def __repr__(self) -> str:
        return f"<Transform {self.name} lossless={self.lossless}>"

    def __call__(self, text: str, *, counter: Counter | None = None) -> Step:
        """Apply the transform to ``text``; the :class:`Step` holds the output
        text and its measured savings."""
        _check_text(text)
        count = _check_counter(counter)
        out = self._func(text)
        return Step(
            transform=self.name,
            lossless=out.lossless,
            tokens_before=count(text),
            tokens_after=count(out.text),
            chars_before=len(text),
            chars_after=len(out.text),
            changed=out.changed,
            notes=out.notes,
            text=out.text,
        )

    def apply(self, text: str) -> str:
        """The transformed text only (no counting)."""
        _check_text(text)
        return self._func(text).text


def _json_dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _same_json(a: Any, b: Any) -> bool:
    # == alone says 1 == 1.0 == True; the types must match as well.
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _minify_block(block: str) -> str | None:
    """The minified form of a JSON block (its line ending kept), or None when
    it would not round-trip to the same data (duplicate keys, say)."""
    body = block.rstrip(" \t\n")
    tail = block[len(body) :]
    try:
        json.loads(body)  # a JSON block at all?
    except (ValueError, RecursionError):
        return None
    # Only the whitespace between tokens goes: every token (numbers as written,
    # strings with their escapes, duplicate keys) is kept verbatim, so the text
    # parses to exactly what the block parsed to.
    small = _JSON_SPACE.sub(_keep_string, body)
    return small + ("\n" if "\n" in tail else "")


_JSON_SPACE = re.compile(r'("(?:[^"\\]|\\.)*")|[ \t\n\r]+')


def _keep_string(m: re.Match[str]) -> str:
    return m.group(1) or ""


_FENCE_OPEN = re.compile(
    r"^([ \t]{0,3}(?:`{3,}|~{3,})[ \t]*json[^\n]*\n)(.*?)(\n[ \t]{0,3}(?:`{3,}|~{3,})[ \t]*)$",
    re.S | re.I,
)


def _minify_json(text: str) -> _Out:
    parts: list[str] = []
    changed = 0
    for kind, seg in _segments(text):
        if kind == "json":
            small = _minify_block(seg)
            if small is not None and small != seg:
                parts.append(small)
                changed += 1
                continue
        elif kind == "code":
            m = _FENCE_OPEN.match(seg)
            if m is not None:
                small = _minify_block(m.group(2))
                if small is not None and small != m.group(2):
                    parts.append(m.group(1) + small.rstrip("\n") + m.group(3))
                    changed += 1
                    continue
        parts.append(seg)
    return _Out("".join(parts), True, changed)


minify_json = Transform(
    "minify_json",
    True,
    _minify_json,
    """JSON blocks (an object or array that starts and ends a line, or a
    fenced ```json block) rewritten without insignificant whitespace. Lossless:
    only whitespace between tokens is removed, every token (numbers as
    written, strings, duplicate keys) is kept verbatim.""",
)

# --- XML --------------------------------------------------------------------------

_BOMB = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.I)
_NOT_DATA = re.compile(r"<!--|<!\[|<\?(?!xml[\s?])|\bxmlns\b", re.I)


def parse_xml(xml: str) -> ET.Element:
    """Parse an XML string with ElementTree after refusing ``<!DOCTYPE`` and
    ``<!ENTITY`` declarations (so no entity expansion can happen: no billion
    laughs, no external entities). Raises ConfigurationError naming ``xml``
    for refused or malformed input."""
    if not isinstance(xml, str):
        raise InputTypeError(f"xml must be a str, not {type(xml).__name__}")
    if _BOMB.search(xml):
        raise ConfigurationError(
            "invalid xml: DOCTYPE/ENTITY declarations are refused (XML bomb guard)"
        )
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ConfigurationError(f"invalid xml: not well-formed ({exc})") from None


def _elem_to_data(el: ET.Element) -> Any:
    children = list(el)
    text = el.text or ""
    if not children and not el.attrib:
        return text
    out: dict[str, Any] = {"@" + k: v for k, v in el.attrib.items()}
    if not children:
        if text:
            out["#text"] = text
        return out
    for child in children:
        value = _elem_to_data(child)
        if child.tag in out:
            prev = out[child.tag]
            if isinstance(prev, list) and getattr(prev, "_multi", False):
                prev.append(value)
            else:
                multi = _Multi([prev, value])
                out[child.tag] = multi
        else:
            out[child.tag] = value
    return out


class _Multi(list[Any]):
    """A list made from repeated child tags (vs a value that is a list)."""

    _multi = True


def xml_to_data(xml: str) -> dict[str, Any]:
    """The JSON-ready form of an XML string: ``{root_tag: value}``, where a
    value is the element's text (a leaf without attributes) or a dict of
    ``"@attr"`` values, ``"#text"`` (a leaf's text) and children by tag (a list
    when a tag repeats). Every value is a string. Refuses DOCTYPE/ENTITY
    (:func:`parse_xml`)."""
    root = parse_xml(xml)
    return {root.tag: _plain(_elem_to_data(root))}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _data_to_elem(tag: str, value: Any) -> list[ET.Element]:
    if isinstance(value, list):
        return [e for v in value for e in _data_to_elem(tag, v)]
    el = ET.Element(tag)
    if isinstance(value, str):
        el.text = value or None
        return [el]
    if not isinstance(value, dict):
        raise ConfigurationError(f"invalid data for <{tag}>: {type(value).__name__}")
    for k, v in value.items():
        if k.startswith("@"):
            el.set(k[1:], v)
        elif k == "#text":
            el.text = v or None
        else:
            el.extend(_data_to_elem(k, v))
    return [el]


def json_to_xml(data: Mapping[str, Any]) -> ET.Element:
    """The inverse of :func:`xml_to_data`: an Element from ``{root_tag: value}``."""
    if not isinstance(data, Mapping) or len(data) != 1:
        raise InputTypeError("data must be a dict with exactly one key (the root tag)")
    ((tag, value),) = data.items()
    return _data_to_elem(tag, value)[0]


def _canon(el: ET.Element) -> tuple[Any, ...]:
    """An element tree up to data-XML equivalence: whitespace-only text
    between elements ignored, attribute order ignored."""
    children = list(el)
    text = el.text or ""
    if children and not text.strip():
        text = ""
    return (
        el.tag,
        tuple(sorted(el.attrib.items())),
        text,
        tuple(_canon(c) for c in children),
        "" if not (el.tail or "").strip() else el.tail,
    )


def _convert_xml_block(block: str) -> tuple[str | None, str]:
    """(JSON text, "") when the block converts losslessly, else (None, why)."""
    body = block.rstrip(" \t\n")
    tail = block[len(body) :]
    if _BOMB.search(body):
        return None, "DOCTYPE/ENTITY refused (XML bomb guard)"
    if _NOT_DATA.search(body):
        return None, "comments, CDATA, processing instructions or namespaces: kept as XML"
    try:
        return _convert_parsed(body, tail)
    except RecursionError:
        return None, "nested too deeply: kept as XML"


def _convert_parsed(body: str, tail: str) -> tuple[str | None, str]:
    try:
        root = parse_xml(body.strip())
    except ConfigurationError:
        return None, "not well-formed: kept as XML"
    for el in root.iter():
        if el is not root and (el.tail or "").strip():
            return None, "mixed content: kept as XML"
    data = {root.tag: _elem_to_data(root)}
    rebuilt = json_to_xml(_plain(data))
    if _canon(rebuilt) != _canon(root):
        return None, "repeated tags out of order or mixed content: kept as XML"
    out = _json_dump(_plain(data))
    if json.loads(out) != _plain(data):  # pragma: no cover - json round trip of str/dict/list
        return None, "JSON round trip failed"
    return out + ("\n" if "\n" in tail else ""), ""


def _xml_to_json(text: str) -> _Out:
    parts: list[str] = []
    changed = 0
    notes: list[str] = []
    for kind, seg in _segments(text):
        if kind == "xml":
            out, why = _convert_xml_block(seg)
            if out is not None:
                parts.append(out)
                changed += 1
                continue
            notes.append(why)
        parts.append(seg)
    return _Out("".join(parts), True, changed, tuple(notes))


xml_to_json = Transform(
    "xml_to_json",
    True,
    _xml_to_json,
    """XML data blocks (a line starting ``<tag`` to a line ending ``</tag>``)
    replaced by minified JSON (:func:`xml_to_data`). Lossless: a block is
    converted only when :func:`json_to_xml` rebuilds an equivalent tree from
    the JSON (same tags, attributes, children in order, leaf text exact;
    whitespace between elements ignored). Blocks with a DOCTYPE/ENTITY
    declaration are refused without being parsed; mixed content, comments,
    CDATA, processing instructions, namespaces and interleaved repeated tags
    stay XML (the step's notes say why).""",
)

# --- whitespace -------------------------------------------------------------------

_INLINE_CODE = re.compile(r"(`+)[^\n]*?\1")
_RUN = re.compile(r"[ \t]{2,}")
_BLANKS = re.compile(r"\n(?:[ \t]*\n){2,}")


def _collapse(m: re.Match[str]) -> str:
    return "\t" if "\t" in m.group() else " "


def _norm_line(line: str) -> str:
    if line.endswith("\r"):  # a CRLF line keeps its CR
        return _norm_line(line[:-1]) + "\r"
    if "\t" in line or line.startswith("    "):
        # tab-separated data (an empty field is two tabs) and indented code:
        # their whitespace is content, left exactly as it is
        return line
    body = line.rstrip(" ")
    stripped = body.lstrip(" \t")
    indent = body[: len(body) - len(stripped)]
    if "`" not in stripped:
        return indent + _RUN.sub(_collapse, stripped)
    out: list[str] = []
    pos = 0
    for m in _INLINE_CODE.finditer(stripped):
        out.append(_RUN.sub(_collapse, stripped[pos : m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(_RUN.sub(_collapse, stripped[pos:]))
    return indent + "".join(out)


def _norm_prose(seg: str) -> str:
    lines = seg.split("\n")
    text = "\n".join(_norm_line(x) for x in lines)
    return _BLANKS.sub("\n\n", text)


def _normalize_whitespace(text: str) -> _Out:
    segs = _segments(text)
    parts: list[str] = []
    changed = 0
    for i, (kind, seg) in enumerate(segs):
        if kind != "prose":
            parts.append(seg)
            continue
        new = _norm_prose(seg)
        if i == 0:
            new = new.lstrip("\n")
        if i == len(segs) - 1:
            new = new.rstrip("\n") + ("\n" if seg.endswith("\n") else "")
        if new != seg:
            changed += 1
        parts.append(new)
    return _Out("".join(parts), True, changed)


normalize_whitespace = Transform(
    "normalize_whitespace",
    True,
    _normalize_whitespace,
    """Prose whitespace normalised: trailing spaces removed (a CR stays), runs
    of spaces inside a line collapsed to one, runs of blank lines collapsed to
    one blank line, leading and trailing blank lines removed. Lossless in this
    sense: every line keeps its indentation and its words in the same order,
    and paragraph breaks stay; lines holding a tab (tab-separated data: an
    empty field is two tabs) or indented by four spaces (code), fenced code,
    ``<pre>``, inline code spans and JSON/XML blocks are not touched
    (byte-identical). Space-made column alignment is the one thing it does
    not keep.""",
)

# --- duplicates ---------------------------------------------------------------------

_PARA_SPLIT = re.compile(r"(\n[ \t]*\n)")


def _dedupe_paragraphs(text: str) -> _Out:
    seen: set[str] = set()
    parts: list[str] = []
    changed = 0
    for kind, seg in _segments(text):
        if kind != "prose":
            parts.append(seg)
            continue
        pieces = _PARA_SPLIT.split(seg)
        kept: list[str] = []
        for j in range(0, len(pieces), 2):
            para = pieces[j]
            sep = pieces[j + 1] if j + 1 < len(pieces) else ""
            key = para.strip()
            if key and key in seen:
                changed += 1
                continue
            if key:
                seen.add(key)
            kept.append(para + sep)
        parts.append("".join(kept))
    return _Out("".join(parts), changed == 0, changed)


dedupe_paragraphs = Transform(
    "dedupe_paragraphs",
    False,
    _dedupe_paragraphs,
    """Prose paragraphs (separated by blank lines) that repeat an earlier
    paragraph exactly (leading and trailing whitespace aside) are removed;
    the first copy stays. Lossy: the repetition itself is dropped. Code and
    data blocks are never removed. Idempotent.""",
)


def _make_dedupe_lines(min_chars: int) -> Callable[[str], _Out]:
    def run(text: str) -> _Out:
        seen: set[str] = set()
        parts: list[str] = []
        changed = 0
        for kind, seg in _segments(text):
            if kind != "prose":
                parts.append(seg)
                continue
            kept: list[str] = []
            for line in seg.splitlines(keepends=True):
                key = line.strip()
                if len(key) >= min_chars:
                    if key in seen:
                        changed += 1
                        continue
                    seen.add(key)
                kept.append(line)
            parts.append("".join(kept))
        return _Out("".join(parts), changed == 0, changed)

    return run


def make_dedupe_lines(min_chars: int = 24) -> Transform:
    """A :data:`dedupe_lines` transform that only removes lines of at least
    ``min_chars`` characters (shorter lines, such as ``}`` or ``OK``, repeat
    for good reasons)."""
    n = operator.index(min_chars) if not isinstance(min_chars, bool) else -1
    if n < 1:
        raise ConfigurationError(f"invalid min_chars={min_chars!r}: must be an int >= 1")
    return Transform(
        "dedupe_lines",
        False,
        _make_dedupe_lines(n),
        f"Prose lines of >= {n} characters that repeat an earlier line exactly "
        "(whitespace around aside) are removed; lossy; idempotent.",
    )


dedupe_lines = make_dedupe_lines(24)

#: The lossless transforms, in the order :func:`compact` runs them by default.
LOSSLESS: tuple[Transform, ...] = (xml_to_json, minify_json, normalize_whitespace)
#: Every transform: the lossless ones, then duplicate paragraphs and lines.
ALL: tuple[Transform, ...] = (*LOSSLESS, dedupe_paragraphs, dedupe_lines)

# --------------------------------------------------------------------------- trimming

_ROLE = re.compile(
    r"^[ \t]*(system|user|assistant|human|ai|tool|function|developer)[ \t]*:", re.I | re.M
)
_SYSTEM_ROLES = frozenset(["system", "developer"])


def _turns(text: str) -> tuple[list[str], list[bool]]:
    """Split a text into pieces and whether each is part of the system part.

    With role markers (``User:``, ``Assistant:``...) at line starts, every
    marker starts a turn; the text before the first marker and ``System:``
    turns are the system part. Without markers, paragraphs are the turns and
    the first paragraph is the system part."""
    starts = [m.start() for m in _ROLE.finditer(text)]
    if starts:
        bounds = [0, *starts] if starts[0] > 0 else starts
        pieces = [text[a:b] for a, b in zip(bounds, [*bounds[1:], len(text)], strict=True)]
        system = []
        for p in pieces:
            m = _ROLE.match(p)
            system.append(m is None or m.group(1).lower() in _SYSTEM_ROLES)
        return pieces, system
    pieces = []
    pos = 0
    for m in _PARA_SPLIT.finditer(text):
        pieces.append(text[pos : m.end()])
        pos = m.end()
    pieces.append(text[pos:])
    pieces = [p for p in pieces if p]
    return pieces, [i == 0 for i in range(len(pieces))]


def _check_budget(budget_tokens: object) -> int:
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int):
        raise InputTypeError(
            f"budget_tokens must be an int or None, not {type(budget_tokens).__name__}"
        )
    if budget_tokens < 0:
        raise ConfigurationError(f"invalid budget_tokens={budget_tokens!r}: must be >= 0")
    return budget_tokens


def _fit_suffix(
    n: int, system: Sequence[bool], cost: Callable[[list[int]], int], budget: int
) -> tuple[list[int], int]:
    """The indices kept: every system piece and the longest suffix of the
    others (at least the last one) whose total cost fits the budget."""
    sys_idx = [i for i in range(n) if system[i]]
    other = [i for i in range(n) if not system[i]]
    lo = 1 if other else 0  # keep at least the last turn
    best: list[int] | None = None
    best_cost = 0
    # the cost is monotone in the suffix length for any sane counter: binary search
    hi = len(other)
    first = sorted([*sys_idx, *other[len(other) - lo :]]) if other else sys_idx
    c = cost(first)
    if c > budget:
        return first, c
    best, best_cost = first, c
    while lo < hi:
        mid = (lo + hi + 1) // 2
        keep = sorted([*sys_idx, *other[len(other) - mid :]])
        c = cost(keep)
        if c <= budget:
            lo, best, best_cost = mid, keep, c
        else:
            hi = mid - 1
    return best, best_cost


def trim_text(text: str, budget_tokens: int, *, counter: Counter | None = None) -> Step:
    """Cut ``text`` to at most ``budget_tokens`` tokens by dropping whole
    turns: the system part (text before the first role marker, ``System:``
    turns; without role markers, the first paragraph) and the latest turns
    are kept; older turns go, oldest first. Raises ConfigurationError naming
    ``budget_tokens`` when the system part and the last turn alone exceed
    it."""
    _check_text(text)
    budget = _check_budget(budget_tokens)
    count = _check_counter(counter)
    before = count(text)
    if before <= budget:
        return Step("trim", True, before, before, len(text), len(text), 0, (), text)
    pieces, system = _turns(text)

    def cost(idx: list[int]) -> int:
        return count("".join(pieces[i] for i in idx))

    keep, after = _fit_suffix(len(pieces), system, cost, budget)
    if after > budget:
        raise ConfigurationError(
            f"invalid budget_tokens={budget}: the system part and the last turn need {after} tokens"
        )
    out = "".join(pieces[i] for i in keep)
    dropped = len(pieces) - len(keep)
    return Step(
        "trim",
        dropped == 0,
        before,
        after,
        len(text),
        len(out),
        dropped,
        (f"dropped {dropped} of {len(pieces)} turns",),
        out,
    )


def messages_tokens(
    messages: Sequence[Mapping[str, Any]],
    *,
    counter: Counter | None = None,
    per_message: int = 4,
) -> int:
    """Tokens of a conversation: each message's content plus ``per_message``
    tokens for its role and separators (OpenAI's chat format spends about 4)."""
    count = _check_counter(counter)
    msgs = _check_messages(messages)
    return sum(count(_content(m)) + per_message for m in msgs)


def trim_messages(
    messages: Sequence[Mapping[str, Any]],
    budget_tokens: int,
    *,
    counter: Counter | None = None,
    per_message: int = 4,
) -> CompactedMessages:
    """Keep every ``system`` (and ``developer``) message and the latest other
    messages whose :func:`messages_tokens` total fits ``budget_tokens``
    (a contiguous suffix: the conversation's end, never a hole in it; at least
    the last message). Order is kept. Raises ConfigurationError naming
    ``budget_tokens`` when the system messages and the last message alone
    exceed it."""
    msgs = _check_messages(messages)
    budget = _check_budget(budget_tokens)
    count = _check_counter(counter)
    per = _check_per_message(per_message)
    costs = [count(_content(m)) + per for m in msgs]
    before = sum(costs)
    system = [str(m.get("role", "")).lower() in _SYSTEM_ROLES for m in msgs]
    keep, after = _fit_suffix(len(msgs), system, lambda idx: sum(costs[i] for i in idx), budget)
    if after > budget:
        raise ConfigurationError(
            f"invalid budget_tokens={budget}: the system messages and the last message "
            f"need {after} tokens"
        )
    dropped = len(msgs) - len(keep)
    return CompactedMessages(
        [dict(msgs[i]) for i in keep], before, after, dropped == 0, dropped, ()
    )


def _content(m: Mapping[str, Any]) -> str:
    c = m.get("content", "")
    return c if isinstance(c, str) else ("" if c is None else str(c))


def _check_messages(messages: object) -> list[Mapping[str, Any]]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Iterable):
        raise InputTypeError(
            f"messages must be a list of {{'role', 'content'}} dicts, not {type(messages).__name__}"
        )
    out = list(messages)
    for i, m in enumerate(out):
        if not isinstance(m, Mapping) or "role" not in m:
            raise InputTypeError(
                f"messages[{i}] must be a dict with 'role' and 'content', not {m!r:.60}"
            )
    return out


def _check_per_message(per_message: object) -> int:
    if isinstance(per_message, bool) or not isinstance(per_message, int):
        raise InputTypeError(f"per_message must be an int, not {type(per_message).__name__}")
    if per_message < 0:
        raise ConfigurationError(f"invalid per_message={per_message!r}: must be >= 0")
    return per_message


# --------------------------------------------------------------------------- compact


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise InputTypeError(f"text must be a str, not {type(text).__name__}")


def _check_counter(counter: object) -> Counter:
    if counter is None:
        return approx_tokens
    if not callable(counter):
        raise InputTypeError(
            f"counter must be a callable(str) -> int, not {type(counter).__name__}"
        )

    def checked(text: str) -> int:
        n = counter(text)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputTypeError(f"counter must return an int >= 0, it returned {n!r:.40}")
        return n

    return checked


def _check_transforms(transforms: object) -> tuple[Transform, ...]:
    if transforms is None:
        return LOSSLESS
    if isinstance(transforms, Transform):
        return (transforms,)
    if isinstance(transforms, str) or not isinstance(transforms, Iterable):
        raise InputTypeError(
            f"transforms must be a sequence of Transform, not {type(transforms).__name__}"
        )
    out = tuple(transforms)
    for t in out:
        if not isinstance(t, Transform):
            raise InputTypeError(f"transforms must hold Transform objects, not {t!r:.60}")
    return out


def compact(
    text: str,
    budget_tokens: int | None = None,
    *,
    transforms: Iterable[Transform] | None = None,
    counter: Counter | None = None,
) -> Compacted:
    """Run ``transforms`` (default :data:`LOSSLESS`) over ``text`` in order,
    then, when ``budget_tokens`` is given and still exceeded, trim to it with
    :func:`trim_text`. Tokens are counted by ``counter`` (default
    :func:`approx_tokens`) before and after every step.

    ``Compacted.lossless`` is True when every step was lossless (the budget
    trimmer is lossless only when it dropped nothing)."""
    _check_text(text)
    chain = _check_transforms(transforms)
    count = _check_counter(counter)
    budget = None if budget_tokens is None else _check_budget(budget_tokens)
    before = count(text)
    steps: list[Step] = []
    cur, cur_tokens = text, before
    for t in chain:
        out = t._func(cur)
        after = count(out.text) if out.text != cur else cur_tokens
        steps.append(
            Step(
                t.name,
                out.lossless,
                cur_tokens,
                after,
                len(cur),
                len(out.text),
                out.changed,
                out.notes,
                out.text,
            )
        )
        cur, cur_tokens = out.text, after
    if budget is not None and cur_tokens > budget:
        step = trim_text(cur, budget, counter=count)
        steps.append(step)
        cur, cur_tokens = step.text, step.tokens_after
    return Compacted(cur, before, cur_tokens, all(s.lossless for s in steps), tuple(steps))


def compact_messages(
    messages: Sequence[Mapping[str, Any]],
    budget_tokens: int | None = None,
    *,
    transforms: Iterable[Transform] | None = None,
    counter: Counter | None = None,
    per_message: int = 4,
) -> CompactedMessages:
    """:func:`compact` for a conversation: every message's ``content`` (a str)
    goes through ``transforms``; then, with ``budget_tokens``, the messages
    are trimmed by :func:`trim_messages` (system messages and the latest
    turns kept). Returns new dicts; the input is not modified."""
    msgs = _check_messages(messages)
    chain = _check_transforms(transforms)
    count = _check_counter(counter)
    per = _check_per_message(per_message)
    budget = None if budget_tokens is None else _check_budget(budget_tokens)
    before = sum(count(_content(m)) + per for m in msgs)
    lossless = True
    out: list[dict[str, Any]] = []
    for m in msgs:
        d = dict(m)
        c = m.get("content")
        if isinstance(c, str):
            for t in chain:
                r = t._func(c)
                lossless = lossless and r.lossless
                c = r.text
            d["content"] = c
        out.append(d)
    after = sum(count(_content(m)) + per for m in out)
    if budget is None or after <= budget:
        return CompactedMessages(out, before, after, lossless, 0, ())
    trimmed = trim_messages(out, budget, counter=count, per_message=per)
    return CompactedMessages(
        trimmed.messages,
        before,
        trimmed.tokens_after,
        lossless and trimmed.lossless,
        trimmed.dropped,
        (),
    )
