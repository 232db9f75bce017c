"""The bundled data (assets/data): every measurable rule of its data card, checked over all four files.

Units, as the card defines them: an English "word" is a whitespace-separated token ("live-action" is one word);
a Chinese "character" is one code point of the text, punctuation included. Loading the files with the helpers'
loaders is tested in tests/test_data.py; this file checks what the card promises about their content.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict

import pytest

from helpers.config import DATA_DIR

ANSWER_FIELDS = ("id", "prompt", "support", "oppose", "lang")
FILES = {  # file → (fields, first id, rows); languages alternate from the first id (English)
    "labelled_data.json": (ANSWER_FIELDS, 1, 140),
    "eval_data.json": (ANSWER_FIELDS, 1001, 96),
    "test_prompt.json": (("id", "prompt", "lang"), 1, 48),
    "probe_data.json": ((*ANSWER_FIELDS, "topic"), 2001, 48),
}
WITH_ANSWERS = [name for name, (fields, _, _) in FILES.items() if "support" in fields]
PROBE_TOPICS = ("novels-to-film", "games-to-film", "remakes", "unrelated")  # in id order, 12 ids each
STANCES = ("support", "oppose")

LENGTH_RANGE = {"en": (12, 35), "zh-TW": (12, 38)}  # the rule
LENGTH_SEEN = {"en": (16, 25), "zh-TW": (25, 34)}  # what the card's limitations say the answers are
MAX_RATIO = 1.3  # the longer answer of a row is at most 30 % longer than the shorter
MAX_OPENER_USES = 6
NEAR_DUPLICATE = 0.8  # Jaccard similarity of two prompts' word sets (English) or character bigrams (Chinese)

FORBIDDEN = re.compile(r"\bsupport|\boppos(e|ed|es|ing|ition)\b|支持|反對", re.IGNORECASE)
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")
# Simplified-only forms of common characters, and mainland words where Taiwan says something else
# (視頻 影片, 網絡 網路, 軟件 軟體, 硬件 硬體, 屏幕 螢幕, 信息 資訊, 質量 品質, 默認 預設, 出租車 計程車, 私家車 自用車).
SIMPLIFIED = set("这们说个还为对会动画实时导电视剧觉员长发变欢与么观众样让应该过脸设计战爱关头语开车场图书乐红编经结总题")
MAINLAND_WORDS = ("視頻", "網絡", "軟件", "硬件", "屏幕", "信息", "質量", "默認", "出租車", "私家車")
ASCII_PUNCTUATION = re.compile(r"[,.!?;:]")


def _rows(name: str) -> list[dict]:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


ROWS = {name: _rows(name) for name in FILES}


def _answers(name: str):
    """(row, stance, text) for every answer of a file."""
    return [(row, stance, row[stance]) for row in ROWS[name] for stance in STANCES]


def _lang(text: str) -> str:
    """zh-TW when the text has more CJK characters than Latin letters, else en."""
    return "zh-TW" if len(CJK.findall(text)) > len(LATIN.findall(text)) else "en"


def _row_lang(row: dict) -> str:
    return row.get("lang") or _lang(row["prompt"])


def _length(text: str, lang: str) -> int:
    """Words (English) or characters, punctuation included (Chinese)."""
    return len(text.split()) if lang == "en" else len(text)


def _opener(text: str, lang: str) -> str:
    """The first word, lower case, without punctuation (English), or the first two characters (Chinese)."""
    return re.sub(r"[^\w'-]", "", text.split()[0]).lower() if lang == "en" else text[:2]


def _sentences(text: str, lang: str) -> int:
    ends = r"[.!?](?=\s|$)" if lang == "en" else r"[。！？]"
    return len(re.findall(ends, text))


def _same(text: str) -> str:
    """The form two texts are compared in for duplicates: case and spacing ignored."""
    return " ".join(text.split()).casefold()


def _tokens(text: str, lang: str) -> set[str]:
    """Word set (English) or set of adjacent CJK character pairs (Chinese), for near-duplicate checks."""
    if lang == "en":
        return set(re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", text.lower()))
    chars = "".join(CJK.findall(text))
    return {chars[i:i + 2] for i in range(len(chars) - 1)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


# ---------------------------------------------------------------- the files table


@pytest.mark.parametrize("name", FILES)
def test_file_format_fields_ids_and_languages(name):
    fields, first, count = FILES[name]
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    rows = ROWS[name]
    assert text == json.dumps(rows, ensure_ascii=False, indent=2) + "\n", "not UTF-8 JSON with indent 2"
    assert [row["id"] for row in rows] == list(range(first, first + count))
    bad = [row["id"] for row in rows if tuple(row) != fields]
    assert not bad, f"fields other than {fields} (or in another order): ids {bad}"
    bad = [(row["id"], key) for row in rows for key in fields[1:]
           if not isinstance(row[key], str) or row[key] != row[key].strip() or not row[key]]
    assert not bad, f"empty, non-text or unstripped fields: {bad}"
    expected = ["en" if (row["id"] - first) % 2 == 0 else "zh-TW" for row in rows]
    assert [_row_lang(row) for row in rows] == expected, "languages do not alternate, English first"
    assert Counter(expected) == {"en": count // 2, "zh-TW": count // 2}


@pytest.mark.parametrize("name", FILES)
def test_detected_language_matches_lang(name):
    bad = [(row["id"], key) for row in ROWS[name] for key in ("prompt", *STANCES)
           if key in row and _lang(row[key]) != _row_lang(row)]
    assert not bad, f"text in another language than its row's lang: {bad}"
    english = [(row["id"], key) for row in ROWS[name] for key in ("prompt", *STANCES)
               if key in row and _row_lang(row) == "en" and CJK.search(row[key])]
    assert not english, f"CJK characters in English text: {english}"


@pytest.mark.parametrize("name", FILES)
def test_chinese_is_traditional_as_used_in_taiwan(name):
    bad = []
    for row in ROWS[name]:
        if _row_lang(row) != "zh-TW":
            continue
        for key in ("prompt", *STANCES):
            text = row.get(key, "")
            found = sorted(SIMPLIFIED & set(text)) + [w for w in MAINLAND_WORDS if w in text]
            if ASCII_PUNCTUATION.search(text):
                found.append("ASCII punctuation")
            if found:
                bad.append((row["id"], key, found))
    assert not bad, f"simplified characters, mainland words or half-width punctuation: {bad}"


@pytest.mark.parametrize("name", FILES)
def test_every_prompt_is_one_question(name):
    bad = [row["id"] for row in ROWS[name] if not row["prompt"].endswith(("?", "？"))
           or len(re.findall(r"[?？]", row["prompt"])) != 1]
    assert not bad, f"prompts that are not one question ending in ? or ？: {bad}"


def test_probe_topics_and_counts():
    rows = ROWS["probe_data.json"]
    assert [row["topic"] for row in rows] == [topic for topic in PROBE_TOPICS for _ in range(12)]
    counts = Counter((row["topic"], row["lang"]) for row in rows)
    assert counts == {(topic, lang): 6 for topic in PROBE_TOPICS for lang in ("en", "zh-TW")}


# ---------------------------------------------------------------- the answers


@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_answer_lengths(name):
    bad, seen = [], defaultdict(list)
    for row, stance, text in _answers(name):
        length = _length(text, row["lang"])
        seen[row["lang"]].append(length)
        low, high = LENGTH_RANGE[row["lang"]]
        if not low <= length <= high:
            bad.append((row["id"], stance, length))
    assert not bad, f"answers outside {LENGTH_RANGE} words/characters: {bad}"
    for lang, lengths in seen.items():  # the card's limitations state this narrower range
        low, high = LENGTH_SEEN[lang]
        assert low <= min(lengths) and max(lengths) <= high, (lang, min(lengths), max(lengths))


@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_one_or_two_sentences(name):
    bad = [(row["id"], stance) for row, stance, text in _answers(name)
           if _sentences(text, row["lang"]) not in (1, 2) or not re.search(r"[.!?。！？]$", text)]
    assert not bad, f"not one or two whole sentences: {bad}"


@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_the_two_answers_of_a_row_have_similar_lengths(name):
    bad = []
    for row in ROWS[name]:
        a, b = (_length(row[stance], row["lang"]) for stance in STANCES)
        if max(a, b) > MAX_RATIO * min(a, b):
            bad.append((row["id"], a, b))
    assert not bad, f"the longer answer is more than 30 % longer: {bad}"


@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_openers_vary_and_do_not_give_the_stance_away(name):
    uses, stances = Counter(), defaultdict(set)
    for row, stance, text in _answers(name):
        key = (row["lang"], _opener(text, row["lang"]))
        uses[key] += 1
        stances[key].add(stance)
    overused = {key: n for key, n in uses.items() if n > MAX_OPENER_USES}
    assert not overused, f"openers used more than {MAX_OPENER_USES} times: {overused}"
    one_sided = {key: sorted(stances[key]) for key, n in uses.items() if n >= 3 and len(stances[key]) < 2}
    assert not one_sided, f"openers used 3+ times by one stance only: {one_sided}"


@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_answers_never_name_the_stances(name):
    bad = [(row["id"], stance, match.group()) for row, stance, text in _answers(name)
           for match in [FORBIDDEN.search(text)] if match]
    assert not bad, f"answers using a forbidden word: {bad}"


# ---------------------------------------------------------------- duplicates, within and across files


def test_no_duplicate_prompts_or_answers_anywhere():
    for kind, texts in (("prompt", [(name, row["id"], row["prompt"]) for name in FILES for row in ROWS[name]]),
                        ("answer", [(name, row["id"], text) for name in WITH_ANSWERS
                                    for row, _, text in _answers(name)])):
        places = defaultdict(list)
        for name, row_id, text in texts:
            places[_same(text)].append((name, row_id))
        repeated = [where for where in places.values() if len(where) > 1]
        assert not repeated, f"the same {kind} more than once: {repeated}"


def _prompts() -> list[tuple[str, int, str, set]]:
    """(file, id, lang, tokens) of every prompt of the four files."""
    return [(name, row["id"], _row_lang(row), _tokens(row["prompt"], _row_lang(row)))
            for name in FILES for row in ROWS[name]]


def test_no_near_duplicate_prompts():
    close = [((a[0], a[1]), (b[0], b[1]), round(_jaccard(a[3], b[3]), 2))
             for a, b in itertools.combinations(_prompts(), 2)
             if a[2] == b[2] and _jaccard(a[3], b[3]) >= NEAR_DUPLICATE]
    assert not close, f"prompts that (nearly) repeat another: {close}"


@pytest.mark.parametrize("a, b, near", [
    ("Should idol anime become live-action dramas?", "Should idol anime become live-action dramas, too?", True),
    ("Should idol anime become live-action dramas?", "Is CGI good enough for giant robots?", False),
    ("真人版應該保留角色的日文名字嗎？", "真人版應該保留角色的日文名字嗎", True),
    ("真人版應該保留角色的日文名字嗎？", "恐怖漫畫拍成真人電影會更可怕嗎？", False),
])
def test_the_near_duplicate_measure(a, b, near):
    lang = _lang(a)
    assert (_jaccard(_tokens(a, lang), _tokens(b, lang)) >= NEAR_DUPLICATE) is near
