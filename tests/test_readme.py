"""README.md says what the library does, and every ```python block of it runs.

The fences are parsed line by line (not with one regex), so a lost opening or
closing fence fails here instead of silently turning an example into prose.
Each ```python block runs in a fresh interpreter against the installed wheel;
there is no way to mark one as not run.
"""

from __future__ import annotations

import builtins
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import overdrive
import overdrive.exceptions

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text(encoding="utf-8")

#: ```python blocks in README.md today. A lost fence turns a block into prose
#: and lowers the count; raise this number when you add an example.
RUNNABLE_BLOCKS = 23
#: Languages a fence may open with (a typo such as ```pyhton is an error).
LANGUAGES = {"python", "sh", "text"}
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")

#: Top-level sections, in the order the house style gives (STYLE.md, "README").
SECTIONS = [
    "Install",
    "Quick start",
    "API overview",
    "Thread safety",
    "Errors",
    "Performance",
    "Development",
]
#: Classes that each have exactly one heading (their quick start).
CLASSES = [
    "Compressor",
    "Batcher",
    "MessageBatcher",
    "BufferPool",
    "ObjectPool",
    "Balancer",
    "WorkerPool",
    "ShardRouter",
    "MemoryTier",
    "RedisTier",
    "DiskTier",
    "TieredCache",
    "LatencyHistogram",
    "CircuitBreaker",
    "ConcurrencyLimiter",
    "RateLimiter",
]


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``; ValueError for an unpaired fence.

    Stricter than CommonMark on purpose: an opening fence must name a language
    (so a bare fence outside a block is a closing fence whose opening was
    lost), and a fence with a language inside a block means the block's
    closing fence was lost.
    """
    blocks: list[Block] = []
    opened: tuple[str, str, int] | None = None  # (fence, lang, line)
    body: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if opened is None:
            if m is None:
                continue
            fence, info = m.group(1), m.group(2).strip()
            if not info:
                raise ValueError(f"line {n}: closing fence without an opening fence")
            lang = info.split()[0]
            if lang not in LANGUAGES:
                raise ValueError(f"line {n}: fence language {lang!r} not in {sorted(LANGUAGES)}")
            opened, body = (fence, lang, n), []
            continue
        fence, lang, start = opened
        if m is not None and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
            if m.group(2).strip():
                raise ValueError(
                    f"line {n}: a new fence opens inside the block of line {start}: "
                    "its closing fence is missing"
                )
            blocks.append(Block(lang, "\n".join(body) + "\n", start))
            opened = None
        else:
            body.append(line)
    if opened is not None:
        raise ValueError(f"line {opened[2]}: fence never closed")
    return blocks


def sections(text: str, level: int) -> list[tuple[str, str]]:
    """(heading, body) of every heading of ``level`` outside code blocks."""
    out: list[tuple[str, list[str]]] = []
    in_code = False
    prefix = "#" * level + " "
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            if line.startswith(prefix):
                out.append((line[len(prefix) :].strip(), []))
                continue
            if len(line) - len(line.lstrip("#")) < level:
                out.append(("", []))  # a higher heading ends the section
                continue
        if out:
            out[-1][1].append(line)
    return [(h, "\n".join(b)) for h, b in out if h]


try:
    BLOCKS, PARSE_ERROR = parse_blocks(TEXT), ""
except ValueError as e:  # reported by test_fences_pair..., not as a collection error
    BLOCKS, PARSE_ERROR = [], str(e)
PYTHON = [b for b in BLOCKS if b.lang == "python"]


# --- the parser itself: a README that lost a fence must fail ---------------------


def test_parser_rejects_a_lost_opening_fence() -> None:
    # The shape the Balancer and WorkerPool examples had: prose, code, a bare fence.
    text = "```python\nx = 1\n```\n\nSome prose:\nlb = od.Balancer(4)\n```\n"
    with pytest.raises(ValueError, match="line 7: closing fence without an opening"):
        parse_blocks(text)


def test_parser_rejects_a_lost_closing_fence() -> None:
    text = "```python\nx = 1\n\n```python\ny = 2\n```\n"
    with pytest.raises(ValueError, match="line 4: a new fence opens inside"):
        parse_blocks(text)
    with pytest.raises(ValueError, match="line 1: fence never closed"):
        parse_blocks("```sh\nmake test\n")


def test_parser_reads_blocks() -> None:
    text = "```python\nx = 1\n```\n\n````text\n```\n````\n"
    blocks = parse_blocks(text)
    assert [(b.lang, b.line) for b in blocks] == [("python", 1), ("text", 5)]
    assert blocks[0].code == "x = 1\n"
    assert blocks[1].code == "```\n"


# --- README structure --------------------------------------------------------------


def test_fences_pair_and_every_python_block_is_collected() -> None:
    assert not PARSE_ERROR, f"README.md {PARSE_ERROR}"
    opening_lines = [n for n, ln in enumerate(TEXT.splitlines(), 1) if ln.startswith("```python")]
    assert [b.line for b in PYTHON] == opening_lines
    assert len(PYTHON) >= RUNNABLE_BLOCKS, (
        f"{len(PYTHON)} ```python blocks, expected {RUNNABLE_BLOCKS}: a fence was lost?"
    )


def test_sections_in_house_order() -> None:
    found = [h for h, _ in sections(TEXT, 2)]
    assert [h for h in found if h in SECTIONS] == SECTIONS, found


@pytest.mark.parametrize("cls", CLASSES)
def test_one_heading_per_class_with_a_runnable_example(cls: str) -> None:
    word = re.compile(rf"\b{cls}\b")
    headed = [(h, body) for h, body in sections(TEXT, 3) if word.search(h)]
    assert len(headed) == 1, f"{cls}: headings {[h for h, _ in headed]}"
    body = headed[0][1]
    examples = [b for b in parse_blocks(body) if b.lang == "python" and word.search(b.code)]
    assert examples, f"{cls}: no example"


def test_names_the_readme_uses_exist() -> None:
    # No promise of a feature before it exists: every od.X / overdrive.X resolves.
    for name in sorted(set(re.findall(r"\b(?:od|overdrive)\.([A-Za-z_]\w*)", TEXT))):
        exists = hasattr(overdrive, name) or importlib.util.find_spec(f"overdrive.{name}")
        assert exists, f"README uses overdrive.{name}, which does not exist"


def test_docs_the_readme_points_to_exist() -> None:
    root = README.parent
    for doc in sorted(set(re.findall(r"\bdocs/[\w-]+\.md\b", TEXT))):
        assert (root / doc).is_file(), f"README points to {doc}, which does not exist"


def test_errors_section_names_every_exception() -> None:
    (body,) = [b for h, b in sections(TEXT, 2) if h == "Errors"]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", body, flags=re.M)
    documented = {name: bases for name, bases in rows}
    exported = set(overdrive.exceptions.__all__)
    defined = {
        n
        for n, v in vars(overdrive.exceptions).items()
        if isinstance(v, type)
        and issubclass(v, BaseException)
        and v.__module__.startswith("overdrive")
    }
    assert defined <= exported, f"defined but not in __all__: {defined - exported}"
    assert sorted(exported - documented.keys()) == [], "missing from the README's Errors table"
    assert sorted(documented.keys() - exported) == [], "in the Errors table, not exported"
    # "re-exported by overdrive", as the section says
    assert sorted(n for n in exported if not hasattr(overdrive, n)) == []
    for name, bases in documented.items():
        cls = getattr(overdrive.exceptions, name)
        for base in re.findall(r"`(\w+)`", bases):
            base_cls = getattr(overdrive.exceptions, base, None) or getattr(builtins, base)
            assert issubclass(cls, base_cls), f"README: {name} is a {base}; it is not"


# --- every example runs ---------------------------------------------------------------


@pytest.mark.parametrize("block", PYTHON, ids=[f"line{b.line}" for b in PYTHON])
def test_readme_block_runs(block: Block, tmp_path: Path) -> None:
    # A fresh interpreter per block, in a scratch directory (examples may write
    # files), with warnings as errors like the rest of the suite.
    res = subprocess.run(
        [sys.executable, "-W", "error", "-c", block.code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, (
        f"README block at line {block.line} failed:\n{block.code}\n--- stderr ---\n{res.stderr}"
    )
