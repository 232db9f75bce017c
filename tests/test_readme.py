"""The two READMEs stay in step: same sections, same code blocks, same tables (shape), same links to files."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGLISH = (ROOT / "README.md").read_text(encoding="utf-8")
CHINESE = (ROOT / "README.zh-TW.md").read_text(encoding="utf-8")


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)


def _outside_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _headings(text: str) -> list[int]:
    return [len(m.group(1)) for m in re.finditer(r"^(#{1,4}) ", _outside_code(text), flags=re.M)]


def _tables(text: str) -> list[tuple[int, int]]:
    """(rows, columns) of every table."""
    tables, rows = [], []
    for line in _outside_code(text).splitlines() + [""]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            tables.append((len(rows), rows[0].count("|") - 1))
            rows = []
    return tables


def _file_links(text: str) -> list[str]:
    return sorted(set(re.findall(r"\]\(((?!https?:)[^)#]+)\)", text)))


def test_same_sections():
    assert _headings(ENGLISH) == _headings(CHINESE)


def test_same_code_blocks():
    assert _code_blocks(ENGLISH) == _code_blocks(CHINESE)


def test_same_tables():
    assert _tables(ENGLISH) == _tables(CHINESE)


def test_same_links_and_they_exist():
    links = [link for link in _file_links(ENGLISH) if link != "README.zh-TW.md"]
    assert links == [link for link in _file_links(CHINESE) if link != "README.md"]
    assert all((ROOT / link).exists() for link in links), [link for link in links if not (ROOT / link).exists()]
