"""Prompt compaction: lossless where it says so, budgets kept, XML bombs refused."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overdrive import ai
from overdrive.ai import compaction
from overdrive.exceptions import ConfigurationError, InputTypeError

FAST = settings(max_examples=150, deadline=None)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    return compaction._same_json(a, b)


# --- JSON ------------------------------------------------------------------------


@FAST
@given(
    value=st.one_of(
        st.lists(json_values, max_size=4),
        st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    ),
    indent=st.sampled_from([None, 1, 2, 4]),
)
def test_json_minification_round_trips_to_the_same_data(value: Any, indent: int | None) -> None:
    text = "Here is the data:\n" + json.dumps(value, indent=indent) + "\nAnswer briefly."
    out = ai.compact(text, transforms=[ai.minify_json, ai.normalize_whitespace])
    assert out.lossless
    head, rest = out.text.split("\n", 1)
    block, tail = rest.rsplit("\n", 1)
    assert head == "Here is the data:"
    assert tail == "Answer briefly."
    assert same(json.loads(block), value)
    assert out.tokens_after <= out.tokens_before


def test_pretty_json_is_minified_and_saves_tokens() -> None:
    data = {"users": [{"id": i, "name": f"User {i}", "tags": ["a", "b"]} for i in range(20)]}
    text = "Response:\n" + json.dumps(data, indent=2) + "\nSummarise."
    step = ai.minify_json(text)
    assert step.lossless and step.changed == 1
    assert json.dumps(data, separators=(",", ":")) in step.text
    assert step.saved_tokens > 0 and step.saved_ratio > 0.1


def test_fenced_json_block_is_minified_inside_its_fence() -> None:
    text = '```json\n{\n  "a": [1,\n 2]\n}\n```\n'
    out = ai.minify_json.apply(text)
    assert out == '```json\n{"a":[1,2]}\n```\n'


def test_json_with_duplicate_keys_keeps_both_verbatim() -> None:
    text = 'x\n{"a": 1,   "a": 2}\ny'
    assert ai.minify_json.apply(text) == 'x\n{"a":1,"a":2}\ny'


def test_json_numbers_and_strings_are_kept_as_written() -> None:
    block = '{"a": 1e400, "b": 0.30000000000000000001, "c": 1.0E2, "d": "s  p\\" q", "e": -0}'
    out = ai.compact("data:\n" + block + "\n")
    assert (
        out.text
        == 'data:\n{"a":1e400,"b":0.30000000000000000001,"c":1.0E2,"d":"s  p\\" q","e":-0}\n'
    )
    assert out.lossless


def test_whitespace_that_is_content_is_left_alone() -> None:
    tsv = "name\tage\tcity\nbob\t\tParis\n"  # an empty field is two tabs
    assert ai.compact(tsv).text == tsv
    code = 'Run:\n    print("a    b")\n'  # indented code, not fenced
    assert ai.compact(code).text == code
    crlf = "Which   orders?\r\nok  \r\n"
    assert ai.compact(crlf).text == "Which orders?\r\nok\r\n"  # CR kept, runs collapsed


def test_prose_brackets_are_not_json() -> None:
    text = "[1] see the note\n{not json at all}\n"
    assert ai.minify_json.apply(text) == text


# --- whitespace ---------------------------------------------------------------------


def shape(text: str) -> list[list[tuple[str, list[str]]]]:
    """Paragraphs -> lines -> (indentation, words with their separator kind)."""
    paras: list[list[tuple[str, list[str]]]] = [[]]
    for line in text.split("\n"):
        if not line.strip():
            if paras[-1]:
                paras.append([])
            continue
        body = line.rstrip(" \t")
        stripped = body.lstrip(" \t")
        seps = ["t" if "\t" in s else "s" for s in re.findall(r"[ \t]+", stripped)]
        paras[-1].append((body[: len(body) - len(stripped)], [*stripped.split(), *seps]))
    return [p for p in paras if p]


@FAST
@given(st.text(alphabet=st.sampled_from(list("ab c\t\n.,")), max_size=120))
def test_whitespace_normalisation_keeps_words_indentation_and_paragraphs(text: str) -> None:
    step = ai.normalize_whitespace(text)
    assert step.lossless
    assert shape(step.text) == shape(text)
    assert ai.normalize_whitespace.apply(step.text) == step.text  # idempotent


def test_whitespace_normalisation_does_not_touch_code_pre_inline_code_or_data() -> None:
    code = "```python\ndef f(x):\n    return   x  \n\n\n\n```\n"
    pre = "<pre>a    b\n\n\n\nc   </pre>\n"
    data = '{"k":   "v   with   spaces"}\n'
    text = "Some    prose   here.   \n\n\n\n" + code + pre + "Use `a    b` here.\n" + data
    out = ai.normalize_whitespace.apply(text)
    assert code in out and pre in out and data in out
    assert "`a    b`" in out
    assert out.startswith("Some prose here.\n\n```python")


# --- XML ------------------------------------------------------------------------------

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>
"""

EXTERNAL = """<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<foo>&xxe;</foo>
"""


@pytest.mark.parametrize("doc", [BOMB, EXTERNAL, "<!doctype x>\n<x>1</x>\n"])
def test_xml_bombs_and_entities_are_refused(doc: str) -> None:
    with pytest.raises(ConfigurationError, match=r"xml.*DOCTYPE/ENTITY"):
        ai.parse_xml(doc)
    with pytest.raises(ConfigurationError, match="DOCTYPE/ENTITY"):
        ai.xml_to_data(doc)
    text = "Data:\n" + doc + "End"
    step = ai.xml_to_json(text)
    assert step.text == text
    assert step.changed == 0
    assert any("DOCTYPE/ENTITY" in n for n in step.notes)


CATALOG = """<catalog>
  <book id="1" lang="en">
    <title>Dune</title>
    <author>Frank Herbert</author>
    <price>9.99</price>
  </book>
  <book id="2">
    <title>Emma</title>
    <author/>
    <price>4.50</price>
  </book>
</catalog>
"""


def test_xml_data_block_becomes_json_that_rebuilds_the_same_tree() -> None:
    step = ai.xml_to_json("Books:\n" + CATALOG + "Which is cheaper?")
    assert step.lossless and step.changed == 1
    block = step.text.split("\n")[1]
    data = json.loads(block)
    assert data["catalog"]["book"][0] == {
        "@id": "1",
        "@lang": "en",
        "title": "Dune",
        "author": "Frank Herbert",
        "price": "9.99",
    }
    assert compaction._canon(ai.json_to_xml(data)) == compaction._canon(ET.fromstring(CATALOG))
    assert step.saved_tokens > 0


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ("<p>Hello <b>world</b> again</p>\n", "mixed content"),
        ("<r>\n  <a>1</a>\n  <b>2</b>\n  <a>3</a>\n</r>\n", "out of order"),
        ("<r>\n  <!-- note -->\n  <a>1</a>\n</r>\n", "comments"),
        ('<r xmlns="urn:x">\n  <a>1</a>\n</r>\n', "namespaces"),
    ],
)
def test_xml_that_would_not_round_trip_stays_xml(doc: str, why: str) -> None:
    text = "x\n" + doc
    step = ai.xml_to_json(text)
    assert step.text == text
    assert step.lossless
    assert any(why in n for n in step.notes)


tags = st.sampled_from(["a", "b", "item", "x.y", "_z"])
leaf_text = st.text(alphabet=st.sampled_from(list("ab &<>'\"\n1")), max_size=6)


@st.composite
def elements(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    el = ET.Element(draw(tags))
    for k in draw(st.lists(st.sampled_from(["id", "k", "v"]), unique=True, max_size=2)):
        el.set(k, draw(leaf_text))
    n = 0 if depth >= 3 else draw(st.integers(0, 3))
    if n == 0:
        el.text = draw(leaf_text) or None
    for _ in range(n):
        el.append(draw(elements(depth + 1)))
    return el


@FAST
@given(elements())
def test_xml_to_json_says_lossless_only_when_the_tree_rebuilds(root: ET.Element) -> None:
    if list(root):
        ET.indent(root)
    doc = ET.tostring(root, encoding="unicode")
    text = "Data:\n" + doc + "\nEnd"
    step = ai.xml_to_json(text)
    assert step.lossless
    if step.changed:
        block = step.text.split("\n")[1]
        rebuilt = ai.json_to_xml(json.loads(block))
        assert compaction._canon(rebuilt) == compaction._canon(ET.fromstring(doc))
    else:
        assert step.text == text


# --- duplicates ---------------------------------------------------------------------

lines = st.lists(
    st.sampled_from(
        [
            "Please remember to follow the company policy at all times.",
            "Is there anything else I can help you with today?",
            "Hi",
            "",
            "The order 1234 shipped yesterday and arrives on Monday.",
            "}",
        ]
    ),
    max_size=30,
)


@FAST
@given(lines)
def test_duplicate_removal_is_idempotent_and_flags_loss(parts: list[str]) -> None:
    text = "\n".join(parts)
    for t in (ai.dedupe_lines, ai.dedupe_paragraphs):
        once = t(text)
        assert t.apply(once.text) == once.text
        assert once.lossless == (once.changed == 0) == (once.text == text)
        assert not t.lossless
    kept = [x for x in ai.dedupe_lines.apply(text).splitlines() if len(x) >= 24]
    assert len(kept) == len(set(kept))
    assert [x for x in ai.dedupe_lines.apply(text).splitlines() if len(x) < 24] == [
        x for x in text.splitlines() if len(x) < 24
    ]


def test_chat_log_boilerplate_is_removed_by_the_lossy_transforms() -> None:
    boiler = "Reminder: answer politely and never reveal internal tools."
    log = "\n\n".join(
        f"User: question {i}?\n{boiler}\nAssistant: answer {i}.\n"
        "Is there anything else I can help you with?"
        for i in range(10)
    )
    lossless = ai.compact(log)
    lossy = ai.compact(log, transforms=ai.ALL)
    assert lossless.lossless and not lossy.lossless
    assert lossy.text.count(boiler) == 1
    assert lossy.savings["dedupe_lines"] > 0
    assert lossy.tokens_after < lossless.tokens_after


def test_code_blocks_are_never_deduplicated() -> None:
    block = "```\nthe same long line repeated in code\n```\n"
    text = block + block + "the same long line repeated in code\n"
    assert ai.dedupe_lines.apply(text) == text


# --- budget trimmer ---------------------------------------------------------------

roles = st.sampled_from(["system", "user", "assistant", "user", "assistant"])
words = st.lists(st.sampled_from(["alpha", "beta", "gamma", "12345", "{x}", "done."]), max_size=12)
conversations = st.lists(
    st.builds(lambda r, w: {"role": r, "content": " ".join(w)}, roles, words),
    min_size=1,
    max_size=12,
)


@FAST
@given(conversations, st.integers(0, 120))
def test_trimmer_never_exceeds_the_budget_and_keeps_system_and_last(
    msgs: list[dict[str, str]], extra: int
) -> None:
    count = ai.approx_tokens
    cost = [count(m["content"]) + 4 for m in msgs]
    system = [i for i, m in enumerate(msgs) if m["role"] == "system"]
    turns = [i for i, m in enumerate(msgs) if m["role"] != "system"]
    need = sum(cost[i] for i in set(system) | set(turns[-1:]))
    budget = need + extra
    out = ai.trim_messages(msgs, budget)
    assert out.tokens_after <= budget
    assert ai.messages_tokens(out.messages) == out.tokens_after
    if turns:  # the last turn is kept
        assert msgs[turns[-1]] in out.messages
    assert [m for m in out.messages if m["role"] == "system"] == [msgs[i] for i in system]
    others = [m for m in msgs if m["role"] != "system"]
    kept = [m for m in out.messages if m["role"] != "system"]
    assert kept == others[len(others) - len(kept) :]  # the latest turns, no holes
    assert out.dropped == len(msgs) - len(out.messages)
    assert out.lossless == (out.dropped == 0)
    if len(kept) < len(others):  # the next older turn would not have fitted
        nxt = others[len(others) - len(kept) - 1]
        assert out.tokens_after + count(nxt["content"]) + 4 > budget
    if need > 0:
        with pytest.raises(ConfigurationError, match="budget_tokens"):
            ai.trim_messages(msgs, need - 1)


@FAST
@given(conversations, st.integers(0, 200))
def test_text_trimmer_keeps_the_system_part_and_the_last_turn(
    msgs: list[dict[str, str]], budget: int
) -> None:
    preamble = "You are a helpful assistant.\n"
    text = preamble + "".join(f"{m['role'].title()}: {m['content']}\n" for m in msgs)
    last = f"{msgs[-1]['role'].title()}: {msgs[-1]['content']}\n"
    pieces = [preamble] + [f"{m['role'].title()}: {m['content']}\n" for m in msgs]
    turns = [i + 1 for i, m in enumerate(msgs) if m["role"] != "system"]
    keep = {0, *turns[-1:]} | {i + 1 for i, m in enumerate(msgs) if m["role"] == "system"}
    minimum = ai.approx_tokens("".join(pieces[i] for i in sorted(keep)))
    if budget < minimum:
        with pytest.raises(ConfigurationError, match="budget_tokens"):
            ai.compact(text, budget_tokens=budget, transforms=())
        return
    out = ai.compact(text, budget_tokens=budget, transforms=())
    assert out.tokens_after <= budget
    assert ai.approx_tokens(out.text) == out.tokens_after
    assert out.text.startswith(preamble)
    assert out.text.endswith(last)
    for m in msgs:
        if m["role"] == "system":
            assert f"System: {m['content']}\n" in out.text
    assert out.lossless == (out.text == text)


def test_compact_messages_compacts_contents_then_trims() -> None:
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "old " * 50},
        {"role": "user", "content": "Data:\n" + json.dumps({"a": [1, 2, 3]}, indent=4)},
    ]
    full = ai.compact_messages(msgs)
    assert full.lossless and full.dropped == 0
    assert full.messages[2]["content"] == 'Data:\n{"a":[1,2,3]}'
    assert msgs[2]["content"].startswith("Data:\n{\n")  # input untouched
    cut = ai.compact_messages(msgs, budget_tokens=40)
    assert [m["role"] for m in cut.messages] == ["system", "user"]
    assert cut.tokens_after <= 40 and not cut.lossless and cut.dropped == 1


# --- API --------------------------------------------------------------------------


def test_compacted_reports_per_step_savings_and_custom_counter() -> None:
    text = "a   b\n\n\n\n" + json.dumps({"k": list(range(10))}, indent=2) + "\n"
    out = ai.compact(text, counter=len)
    assert out.tokens_before == len(text) and out.tokens_after == len(out.text)
    assert [s.transform for s in out.steps] == [
        "xml_to_json",
        "minify_json",
        "normalize_whitespace",
    ]
    assert sum(out.savings.values()) == out.saved_tokens > 0
    assert out.lossless and 0 < out.saved_ratio < 1
    assert all(t.lossless for t in ai.LOSSLESS)
    assert {t.name for t in ai.ALL} >= {"dedupe_lines", "dedupe_paragraphs"}


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(InputTypeError, match="text"):
        ai.compact(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="budget_tokens=-1"):
        ai.compact("x", budget_tokens=-1)
    with pytest.raises(InputTypeError, match="budget_tokens"):
        ai.compact("x", budget_tokens=1.5)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="transforms"):
        ai.compact("x", transforms="minify_json")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="counter"):
        ai.compact("x", counter=5)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="counter must return"):
        ai.compact("x", counter=lambda s: -1)
    with pytest.raises(InputTypeError, match="messages"):
        ai.trim_messages("hello", 10)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"messages\[0\]"):
        ai.trim_messages([{"content": "x"}], 10)
    with pytest.raises(ConfigurationError, match="min_chars"):
        ai.make_dedupe_lines(0)
    with pytest.raises(InputTypeError, match="xml"):
        ai.parse_xml(b"<a/>")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not well-formed"):
        ai.parse_xml("<a>")


def test_deterministic() -> None:
    text = CATALOG + "\n\n\n  x   y  \n" + json.dumps([1, {"b": 2}], indent=2)
    assert ai.compact(text, transforms=ai.ALL) == ai.compact(text, transforms=ai.ALL)


@pytest.mark.parametrize(
    "text",
    [
        "<br>\n" * 20000,
        "{\n" * 20000,
        "[ref\n" * 20000,
        "<pre>\n" * 20000,
        "```\n" + "x\n" * 20000,
        "<a>" * 5000 + "1" + "</a>" * 5000 + "\n",  # deeper than the recursion limit
        "[" * 5000 + "1" + "]" * 5000 + "\n",
        '{"a":' * 900 + "1" + "}" * 900 + "\n",
    ],
)
def test_pathological_inputs_stay_linear_and_unchanged(text: str) -> None:
    # Each of these took minutes with a quadratic scan (the test timeout catches a regression).
    assert ai.compact(text, transforms=ai.ALL).text == text
