"""helpers.data: every format on its sample file, the homework's ratio rule, and one test per data error."""

from __future__ import annotations

import json
import math
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import data, homework_data
from helpers.config import DATA_DIR, SAMPLES_DIR
from helpers.errors import DataError, UserError


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict:
    return {"role": "system", "content": text}


def write(path: Path, content) -> Path:
    """A .json file (a list, dumped) or a .jsonl file (a list of objects, one per line), or raw text."""
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in content), encoding="utf-8")
    else:
        path.write_text(json.dumps(content, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def at(path: Path) -> str:
    """A path as a regular expression."""
    return re.escape(str(path))


def homework_rows(n: int = 3) -> list[dict]:
    return [{"id": i + 1, "prompt": f"問題 {i + 1}？", "support": f"贊成 {i + 1}。", "oppose": f"反對 {i + 1}。"}
            for i in range(n)]


# ---------------------------------------------------------------- the sample files

SAMPLES = {  # file → (format, number of pairs or conversations)
    "homework.json": ("homework", 4),
    "orca.jsonl": ("orca", 3),
    "stack-exchange.jsonl": ("stack-exchange", 3),
    "cvalues.jsonl": ("cvalues", 3),
    "multi-turn.json": ("multi-turn", 2),
    "hh-rlhf.jsonl": ("hh-rlhf", 3),
    "ranked.jsonl": ("ranked", 9),
    "trl-standard.jsonl": ("trl-standard", 3),
    "trl-standard-implicit.jsonl": ("trl-standard-implicit", 2),
    "trl-conversational.jsonl": ("trl-conversational", 2),
    "trl-conversational-implicit.jsonl": ("trl-conversational-implicit", 2),
    "sharegpt.json": ("sharegpt", 2),
    "sharegpt-text.jsonl": ("sharegpt", 3),
    "medicalgpt.jsonl": ("medicalgpt", 3),
    "sft-messages.jsonl": ("sft-messages", 3),
    "sft-llama2.jsonl": ("sft-llama2", 3),
}


def test_every_format_has_a_sample():
    assert {fmt for fmt, _ in SAMPLES.values()} == set(data.FORMATS) | set(data.SFT_FORMATS)
    assert sorted(p.name for p in SAMPLES_DIR.iterdir() if p.suffix in (".json", ".jsonl")) == sorted(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_detect_and_check_each_sample(name):
    fmt, count = SAMPLES[name]
    assert data.detect_format(data.read_records(SAMPLES_DIR / name)) == fmt
    for report in (data.check_file(SAMPLES_DIR / name), data.check_file(SAMPLES_DIR / name, fmt)):
        assert (report.format, report.pairs, report.skipped, report.duplicated) == (fmt, count, None, 0)


EXPECTED_ROWS = {  # file → (row index, the exact record the converter gives)
    "homework.json": (0, {"prompt": [user("學校是否應該禁止學生在課堂上使用手機？")],
                          "chosen": [assistant("禁止手機能讓學生專心上課，提升學習效果。")],
                          "rejected": [assistant("手機也是學習工具，全面禁止會限制學習方式。")],
                          "id": 1, "preferred": "support"}),
    "orca.jsonl": (1, {"prompt": [system("You are a helpful assistant. Answer briefly."),
                                  user("Name the largest planet in the solar system.")],
                       "chosen": [assistant("Jupiter is the largest planet.")],
                       "rejected": [assistant("Saturn is the largest planet.")]}),
    "stack-exchange.jsonl": (2, {"prompt": [user("Question: How can I count the lines of a file in a shell?"
                                                 "\n\nAnswer: ")],
                                 "chosen": [assistant("Run `wc -l file.txt`.")],
                                 "rejected": [assistant("Open the file in an editor and count them.")]}),
    "cvalues.jsonl": (1, {"prompt": [user("考試前一晚熬夜讀書有用嗎？")],
                          "chosen": [assistant("適度複習有幫助，但睡眠對記憶很重要，建議早點休息。")],
                          "rejected": [assistant("有用，整晚不睡、多喝幾杯咖啡最有效率。")]}),
    "multi-turn.json": (0, {"prompt": [user("我想開始跑步，該怎麼準備？"),
                                       assistant("先準備一雙合腳的跑鞋，從每次二十分鐘的慢跑開始。"),
                                       user("一週跑幾次比較好？")],
                            "chosen": [assistant("初學者一週跑三次，中間安排休息日。")],
                            "rejected": [assistant("每天都要跑，完全不用休息。")]}),
    "hh-rlhf.jsonl": (1, {"prompt": [user("Can you suggest a name for my cat?"),
                                     assistant("How about Mochi or Pepper?"), user("Something longer, please.")],
                          "chosen": [assistant("Maybe Sir Whiskerton or Clementine.")],
                          "rejected": [assistant("Cat.")]}),
    "ranked.jsonl": (3, {"prompt": [user("用一句話介紹台北。")],
                         "chosen": [assistant("台北是台灣的首都，以夜市和台北101聞名。")],
                         "rejected": [assistant("台北是一座城市。")]}),
    "trl-standard.jsonl": (0, {"prompt": "The capital of France is", "chosen": " Paris.", "rejected": " London."}),
    "trl-standard-implicit.jsonl": (1, {"chosen": "貓咪喜歡在陽光下睡覺。", "rejected": "貓咪喜歡在水裡睡覺。"}),
    "trl-conversational.jsonl": (1, {"prompt": [system("請用繁體中文簡短回答。"), user("一年有幾個月？")],
                                     "chosen": [assistant("一年有十二個月。")],
                                     "rejected": [assistant("一年有十個月。")]}),
    "trl-conversational-implicit.jsonl": (1, {"prompt": [user("推薦一種水果。"),
                                                         assistant("可以試試芭樂，富含維生素C。"), user("還有別的嗎？")],
                                              "chosen": [assistant("鳳梨也很好吃。")],
                                              "rejected": [assistant("沒有了。")]}),
    "sharegpt.json": (1, {"prompt": [system("You are a patient math tutor."), user("What is 15% of 80?"),
                                     assistant("15% of 80 is 12."), user("And 30%?")],
                          "chosen": [assistant("30% is twice 15%, so it is 24.")],
                          "rejected": [assistant("30% of 80 is 30.")]}),
    "sharegpt-text.jsonl": (1, {"prompt": [system("你是一位說話簡潔的圖書館員。"), user("借的書逾期了怎麼辦？")],
                                "chosen": [assistant("盡快歸還並繳清逾期費用，下次可以先在網路上辦續借。")],
                                "rejected": [assistant("不用理它，圖書館不會發現。")]}),
    "medicalgpt.jsonl": (2, {"prompt": [user("我想在家煮咖啡，需要買什麼？"),
                                        assistant("最基本的是手沖壺、濾杯、濾紙和新鮮的咖啡豆。"), user("豆子要怎麼保存？")],
                             "chosen": [assistant("裝進密封罐，避光放在常溫處，開封後兩到三週內喝完最好。")],
                             "rejected": [assistant("隨便放在窗邊曬太陽就好，豆子不會變質。")]}),
}


@pytest.mark.parametrize("name", EXPECTED_ROWS)
def test_converter_output_exactly(name):
    index, expected = EXPECTED_ROWS[name]
    dataset = data.load_preference_file(SAMPLES_DIR / name)
    assert dataset[index] == expected
    assert dataset.column_names == list(expected)


def test_orca_without_system_has_no_system_message():
    assert data.load_preference_file(SAMPLES_DIR / "orca.jsonl")[0]["prompt"] == [user("What is 7 times 8?")]


def test_multi_turn_swaps_when_scores_say_so():
    second = data.load_preference_file(SAMPLES_DIR / "multi-turn.json")[1]
    assert second["chosen"] == [assistant("Water boils at 100 °C (212 °F) at sea level.")]
    assert second["rejected"] == [assistant("Water boils at 90 °C at sea level.")]


def test_hh_rlhf_single_turn_prompt():
    first = data.load_preference_file(SAMPLES_DIR / "hh-rlhf.jsonl")[0]
    assert first["prompt"] == [user("What should I pack for a day hike?")]
    assert first["rejected"] == [assistant("Just your phone; you can buy anything on the trail.")]


def test_ranked_all_and_adjacent_pairs():
    every = data.load_preference_file(SAMPLES_DIR / "ranked.jsonl")
    adjacent = data.load_preference_file(SAMPLES_DIR / "ranked.jsonl", pairs="adjacent")
    assert (len(every), len(adjacent)) == (3 + 6, 2 + 3)
    taipei = [(p["chosen"][0]["content"][:2], p["rejected"][0]["content"][:2]) for p in adjacent][2:]
    assert taipei == [("台北", "台北"), ("台北", "台北"), ("台北", "不知")]
    assert every[2]["chosen"] == [assistant("Sleep is good for you.")]
    assert every[2]["rejected"] == [assistant("Sleep is a waste of time.")]
    with pytest.raises(UserError, match="pairs must be"):
        data.load_preference_file(SAMPLES_DIR / "ranked.jsonl", pairs="best")
    with pytest.raises(UserError, match="format orca takes no option pairs"):
        data.load_preference_file(SAMPLES_DIR / "orca.jsonl", pairs="adjacent")


def test_medicalgpt_layouts_old_and_new_give_the_same_pairs():
    older = data.load_preference_file(SAMPLES_DIR / "medicalgpt.jsonl")  # system, history, question, response_*
    newer = data.load_preference_file(SAMPLES_DIR / "sharegpt-text.jsonl")  # the same pairs as conversations
    assert older.to_list() == newer.to_list()
    assert [[m["role"] for m in pair["prompt"]] for pair in older] == [
        ["user"], ["system", "user"], ["user", "assistant", "user"]]  # empty system: none; history: earlier turns


def test_medicalgpt_reward_file_json_lines_under_a_json_name(tmp_path):
    rows = [{"question": "蘋果要放冰箱嗎？", "response_chosen": "放冷藏可以保存比較久。", "response_rejected": "不能放。"},
            {"question": "Is tea a good drink before bed?", "response_chosen": "Herbal tea is; black tea may keep "
             "you awake.", "response_rejected": "Yes, the stronger the better."}]
    path = write(tmp_path / "test.json", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    pairs = data.load_preference_file(path)
    assert data.detect_format(data.read_records(path)) == "medicalgpt"
    assert pairs.to_list() == [{"prompt": [user(r["question"])], "chosen": [assistant(r["response_chosen"])],
                                "rejected": [assistant(r["response_rejected"])]} for r in rows]


def test_sharegpt_answers_as_objects_or_text_and_openai_style_turns(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "Hi?"}], "chosen": {"from": "gpt", "value": "Hello."},
             "rejected": "Go away."},
            {"conversations": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
             "chosen": {"role": "assistant", "content": "Hello."}, "rejected": {"role": "assistant", "content": "?"}},
            {"system": "Be brief.", "conversations": [{"from": "human", "value": "Hi?"}], "chosen": "Hello.",
             "rejected": "?"}]
    pairs = data.load_preference_file(write(tmp_path / "rows.json", rows)).to_list()
    assert pairs[0] == {"prompt": [user("Hi?")], "chosen": [assistant("Hello.")], "rejected": [assistant("Go away.")]}
    assert pairs[1] == pairs[2] == {"prompt": [system("Be brief."), user("Hi?")], "chosen": [assistant("Hello.")],
                                    "rejected": [assistant("?")]}


def test_sft_samples_become_messages():
    llama = data.load_sft_file(SAMPLES_DIR / "sft-llama2.jsonl")
    assert llama[1]["messages"] == [
        system("Answer in one sentence."), user("Why is the sea salty?"),
        assistant("Rivers carry dissolved minerals into the sea, and they stay there when the water evaporates.")]
    assert llama[2]["messages"] == [user("你好"), assistant("你好！有什麼可以幫忙的嗎？"),
                                    user("推薦一本書。"), assistant("推薦《小王子》，簡短又有深度。")]
    messages = data.load_sft_file(SAMPLES_DIR / "sft-messages.jsonl")
    assert messages[1]["messages"][0] == system("請用繁體中文回答。")


def test_loading_the_wrong_kind_is_refused():
    with pytest.raises(DataError, match="load_sft_file"):
        data.load_preference_file(SAMPLES_DIR / "sft-messages.jsonl")
    with pytest.raises(DataError, match="load_preference_file"):
        data.load_sft_file(SAMPLES_DIR / "orca.jsonl")


@pytest.mark.parametrize("name", ["homework.json", "trl-standard.jsonl", "sft-llama2.jsonl"])
def test_convert_round_trip_keeps_chinese(name, tmp_path):
    out = tmp_path / "out.jsonl"
    report = data.convert_file(SAMPLES_DIR / name, "auto", out)
    fmt, count = report.format, report.pairs
    assert (fmt, count) == SAMPLES[name]
    text = out.read_text(encoding="utf-8")
    assert len(text.splitlines()) == count and "\\u" not in text
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)  # the Chinese characters are written as they are
    if fmt.startswith("sft"):
        assert data.load_sft_file(out).to_list() == data.load_sft_file(SAMPLES_DIR / name).to_list()
    else:
        columns = ["prompt", "chosen", "rejected"]  # pass-through formats keep only these
        again = data.load_preference_file(out)
        assert again.to_list() == data.load_preference_file(SAMPLES_DIR / name).select_columns(columns).to_list()
        assert data.detect_format(data.read_records(out)) in ("trl-conversational", "trl-standard")


def test_dataset_to_json_output_is_read_as_json_lines(tmp_path):
    path = tmp_path / "pairs.json"  # datasets writes JSON Lines even into a .json file
    data.load_preference_file(SAMPLES_DIR / "orca.jsonl").to_json(path)
    assert len(data.load_preference_file(path)) == 3


# ---------------------------------------------------------------- the homework's files


@pytest.mark.parametrize("loader, name, fields", [
    (data.load_homework, "labelled_data.json", {"id", "prompt", "support", "oppose"}),
    (data.load_eval_rows, "eval_data.json", {"id", "prompt", "support", "oppose"}),
    (data.load_test_prompts, "test_prompt.json", {"id", "prompt"}),
    (data.load_probe_rows, "probe_data.json", {"id", "prompt", "support", "oppose", "topic"}),
])
def test_bundled_homework_files_load(loader, name, fields):
    if not (DATA_DIR / name).exists():
        pytest.skip(f"{name} is not there yet")
    rows = loader()
    assert rows and all(fields <= set(row) for row in rows)
    assert len({row["id"] for row in rows}) == len(rows)


def test_bundled_labelled_rows_make_pairs():
    if not (DATA_DIR / "labelled_data.json").exists():
        pytest.skip("labelled_data.json is not there yet")
    rows = data.load_homework()
    size = min(50, len(rows))
    pairs = data.make_preference_pairs(rows, 0.58, size, system_prompt="回覆請少於20字")
    assert list(pairs["preferred"]).count("support") == data.n_support_preferred(size, 0.58)
    assert pairs[0]["prompt"][0] == system("回覆請少於20字")


def test_homework_sample_loads_with_the_homework_loader():
    rows = data.load_homework(SAMPLES_DIR / "homework.json")
    assert [row["id"] for row in rows] == [1, 2, 3, 4] and rows[0]["lang"] == "zh-TW"


def test_clone_failure_says_what_to_do_offline(tmp_path):
    with pytest.raises(UserError) as caught:
        data.clone_homework_data(tmp_path / "hw", url=f"file://{tmp_path}/no-such-repo.git")
    message = str(caught.value)
    assert "by hand" in message and "\n" not in message
    assert not (tmp_path / "hw").exists()


def test_clone_timeout_is_a_user_error(tmp_path, monkeypatch):
    def too_slow(*args, **kwargs):
        assert kwargs["timeout"] == 60 and kwargs["env"]["GIT_TERMINAL_PROMPT"] == "0"
        raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])

    monkeypatch.setattr(homework_data.subprocess, "run", too_slow)
    with pytest.raises(UserError, match="no answer within 60 s.*by hand"):
        data.clone_homework_data(tmp_path / "hw")


# ---------------------------------------------------------------- the ratio rule


@pytest.mark.parametrize("size, ratio, expected", [
    (50, 0.58, 29),  # the homework's int(50 * 0.58) gives 28
    (100, 0.29, 29),  # int(100 * 0.29) gives 28
    (10, 0.3, 3), (3, 0.5, 1), (10, 0.25, 2), (50, 0, 0), (50, 1, 50), (50, 1.0, 50), (1, 0.99, 0),
    (50, Fraction(29, 50), 29),
])
def test_n_support_preferred(size, ratio, expected):
    assert data.n_support_preferred(size, ratio) == expected


def test_the_float_product_really_differs():
    assert int(50 * 0.58) == 28 and int(100 * 0.29) == 28  # why we do not use it


@pytest.mark.parametrize("ratio", [-0.1, 1.01, float("nan"), float("inf"), "0.5", None, True])
def test_bad_ratio(ratio):
    with pytest.raises(DataError, match="field 'support_ratio'"):
        data.n_support_preferred(10, ratio)
    with pytest.raises(DataError, match="field 'support_ratio'"):
        data.make_preference_pairs(homework_rows(), ratio)


@pytest.mark.parametrize("size, problem", [(0, "at least 1"), (-3, "at least 1"), (4, "only 3 rows"),
                                           (2.0, "whole number"), (True, "whole number")])
def test_bad_data_size(size, problem):
    with pytest.raises(DataError, match=f"field 'data_size': .*{problem}"):
        data.make_preference_pairs(homework_rows(3), 0.5, data_size=size)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(1, 30), st.floats(0, 1), st.booleans())
def test_preference_pairs_properties(draw, n_rows, ratio, spread):
    ids = draw.draw(st.permutations(range(100, 100 + n_rows)))
    rows = [{"id": i, "prompt": f"p{i}", "support": f"s{i}", "oppose": f"o{i}"} for i in ids]
    size = draw.draw(st.integers(1, n_rows))
    pairs = data.make_preference_pairs(rows, ratio, size, spread=spread)
    k = math.floor(size * Fraction(str(ratio)))
    preferred = list(pairs["preferred"])
    assert len(pairs) == size and preferred.count("support") == k
    assert list(pairs["id"]) == list(ids[:size])  # order kept
    for row, pair in zip(rows, pairs):
        assert pair["chosen"] != pair["rejected"]
        assert pair["chosen"][0]["content"] == row[pair["preferred"]]
        assert pair["prompt"] == [user(row["prompt"])]
    if spread:  # every prefix holds its fair share of support rows
        assert all(preferred[:m].count("support") == m * k // size for m in range(size + 1))
    else:
        assert preferred == ["support"] * k + ["oppose"] * (size - k)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 12))
def test_sft_examples_are_balanced(n_rows):
    examples = data.make_sft_examples(homework_rows(n_rows), system_prompt="短答")
    assert len(examples) == 2 * n_rows
    assert list(examples["stance"]) == ["support", "oppose"] * n_rows
    assert examples[1]["completion"] == [assistant("反對 1。")]
    assert examples[1]["prompt"] == [system("短答"), user("問題 1？")]


# ---------------------------------------------------------------- data errors name the file, the row and the field


def _break(rows: list[dict], index: int, **changes) -> list[dict]:
    rows = [dict(row) for row in rows]
    for key, value in changes.items():
        if value is ...:
            del rows[index][key]
        else:
            rows[index][key] = value
    return rows


@pytest.mark.parametrize("changes, row, field, problem", [
    ({"support": ...}, "id 2", "support", "is missing"),
    ({"prompt": ""}, "id 2", "prompt", "is empty"),
    ({"oppose": "   "}, "id 2", "oppose", "is empty"),
    ({"support": 42}, "id 2", "support", "is a number .*expected text"),
    ({"prompt": None}, "id 2", "prompt", "is null"),
    ({"support": "反對 2。"}, "id 2", "support", "is identical to 'oppose'"),
    ({"id": 1}, "id 1", "id", "duplicated"),
    ({"id": ...}, "index 1", "id", "is missing"),
    ({"id": "two"}, "id two", "id", "mixes numbers and text"),
    ({"lang": 7}, "id 2", "lang", "expected text"),
])
def test_homework_errors(tmp_path, changes, row, field, problem):
    path = write(tmp_path / "labelled.json", _break(homework_rows(), 1, **changes))
    with pytest.raises(DataError, match=f"^{at(path)}: {row}: field '{field}': .*{problem}"):
        data.load_homework(path)
    with pytest.raises(DataError, match=f"^{at(path)}: {row}: field '{field}': .*{problem}"):
        data.check_file(path)
    with pytest.raises(DataError, match=f"{row}: field '{field}'"):
        data.make_preference_pairs(_break(homework_rows(), 1, **changes), 0.5)


def test_test_prompts_errors(tmp_path):
    path = write(tmp_path / "test.json", [{"id": 1, "prompt": "a"}, {"id": 2, "prompt": 3}])
    with pytest.raises(DataError, match=f"^{at(path)}: id 2: field 'prompt': is a number"):
        data.load_test_prompts(path)


@pytest.mark.parametrize("topic, problem", [(..., "is missing"), ("  ", "is empty"), (3, "is a number")])
def test_probe_rows_need_a_topic(tmp_path, topic, problem):
    rows = [{**row, "topic": "remakes"} for row in homework_rows()]
    path = write(tmp_path / "probe.json", _break(rows, 1, topic=topic))
    assert len(data.load_probe_rows(write(tmp_path / "good.json", rows))) == 3
    with pytest.raises(DataError, match=f"^{at(path)}: id 2: field 'topic': {problem}"):
        data.load_probe_rows(path)


def test_missing_default_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(homework_data, "DATA_DIR", tmp_path)
    with pytest.raises(DataError, match="file not found; clone the homework data"):
        data.load_homework()


ORCA = {"system": "", "question": "q?", "chosen": "yes", "rejected": "no"}
CONV = {"prompt": [user("q?")], "chosen": [assistant("yes")], "rejected": [assistant("no")]}


SAMPLE_OF = {fmt: name for name, (fmt, _) in SAMPLES.items()}


@pytest.mark.parametrize("record, fmt, field, problem", [
    ({**ORCA, "chosen": "no"}, "orca", "chosen", "identical to 'rejected'"),
    ({**ORCA, "question": 5}, "orca", "question", "is a number"),
    ({**ORCA, "rejected": None}, "orca", "rejected", "is null"),
    ({"qid": 9, "question": "q", "response_j": "a", "response_k": " a "}, "stack-exchange", "response_j", "identical"),
    ({"prompt": "p", "pos_resp": "", "neg_resp": "n"}, "cvalues", "pos_resp", "is empty"),
    ({**CONV, "chosen": [{"role": "robot", "content": "x"}]}, "trl-conversational", "chosen[0]", "role 'robot'"),
    ({**CONV, "chosen": [{"content": "x"}]}, "trl-conversational", "chosen[0]", "has no role"),
    ({**CONV, "rejected": [assistant("  ")]}, "trl-conversational", "rejected[0].content", "is empty"),
    ({**CONV, "chosen": CONV["rejected"]}, "trl-conversational", "chosen", "identical"),
    ({**CONV, "prompt": [assistant("hi")]}, "trl-conversational", "prompt", "must end with a user message"),
    ({**CONV, "chosen": "yes"}, "trl-conversational", "chosen", "is text; expected a list of messages"),
    ({"chosen": [user("a"), assistant("x")], "rejected": [user("b"), assistant("y")]}, "trl-conversational-implicit",
     "chosen", "shares no prompt"),
    ({"chosen": [user("a")], "rejected": [user("b")]}, "trl-conversational-implicit", "chosen",
     "must end with an assistant message"),
    ({"prompt": "p", "chosen": "a", "rejected": 1}, "trl-standard", "rejected", "is a number"),
    ({"prompt": "p", "chosen": "a"}, "trl-standard", "rejected", "is missing"),
    ({"chosen": "a", "rejected": "a"}, "trl-standard-implicit", "chosen", "identical"),
    ({"chosen": "Human: hi", "rejected": "Human: ho"}, "hh-rlhf", "chosen", "does not parse"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}, "hh-rlhf", "chosen",
     "shares no prompt ending in a user turn"),
    ({"prompt": "p", "responses": ["only one"]}, "ranked", "responses", "has 1 responses"),
    ({"prompt": "p", "responses": ["a", "b", "a"]}, "ranked", "responses[2]", "repeats"),
    ({"messages": [{"role": "user", "value": "q"}, {"role": "user", "chosen_value": "a", "rejected_value": "b"}]},
     "multi-turn", "messages[1]", "the last turn must be the assistant's"),
    ({"messages": [{"role": "user", "value": "q"},
                   {"role": "assistant", "chosen_value": "a", "rejected_value": "b", "chosen_score": "high"}]},
     "multi-turn", "messages[1].chosen_score", "expected a number"),
    ({"messages": [user("hi")]}, "sft-messages", "messages", "no assistant message"),
    ({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "human", "value": "a"}, "rejected": "b"},
     "sharegpt", "chosen", "is a user turn; expected the assistant's"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "chosen": "b",
      "rejected": "c"}, "sharegpt", "conversations", "must end with a user message"),
    ({"conversations": [{"from": "observation", "value": "42"}], "chosen": "b", "rejected": "c"}, "sharegpt",
     "conversations[0]", "from 'observation' is not one of human, gpt, system"),
    ({"conversations": [{"from": "human", "value": " "}], "chosen": "b", "rejected": "c"}, "sharegpt",
     "conversations[0].value", "is empty"),
    ({"conversations": [{"from": "human", "value": "q"}], "chosen": None, "rejected": "c"}, "sharegpt", "chosen",
     "is null; expected text or a"),
    ({"conversations": [{"from": "human", "value": "q"}], "rejected": "c"}, "sharegpt", "chosen", "is missing"),
    ({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "c "},
      "rejected": "c"}, "sharegpt", "chosen", "identical to 'rejected'"),
    ({"system": "s", "conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}],
      "chosen": "b", "rejected": "c"}, "sharegpt", "system", "given twice"),
    ({"conversations": [], "chosen": "b", "rejected": "c"}, "sharegpt", "conversations", "is an empty list"),
    ({"question": "q", "history": [["a"]], "response_chosen": "b", "response_rejected": "c"}, "medicalgpt",
     "history[0]", r"has 1 items; expected a \[question, answer\] pair"),
    ({"question": "q", "history": [["a", ""]], "response_chosen": "b", "response_rejected": "c"}, "medicalgpt",
     "history[0][1]", "is empty"),
    ({"question": "q", "history": "a", "response_chosen": "b", "response_rejected": "c"}, "medicalgpt", "history",
     "is text; expected a list"),
    ({"question": "q", "system": 3, "response_chosen": "b", "response_rejected": "c"}, "medicalgpt", "system",
     "is a number"),
    ({"question": "q", "response_chosen": "b", "response_rejected": "b"}, "medicalgpt", "response_chosen",
     "identical"),
    ({"text": "<s>[INST] hi [/INST] </s>"}, "sft-llama2", "text", "empty answer"),
    ({"text": "hello [INST] hi [/INST] ho"}, "sft-llama2", "text", "does not parse"),
])
def test_format_errors(tmp_path, record, fmt, field, problem):
    good = data.read_records(SAMPLES_DIR / SAMPLE_OF[fmt])[0]  # a valid first row, then the broken one
    path = write(tmp_path / "pairs.jsonl", [good, record])
    row = "qid 9" if "qid" in record else "line 2"
    with pytest.raises(DataError, match=f"^{at(path)}: {row}: field '{re.escape(field)}': .*{problem}"):
        data.check_file(path, fmt)


def test_rows_of_a_json_list_are_named_by_index(tmp_path):
    path = write(tmp_path / "pairs.json", [ORCA, ORCA, {**ORCA, "chosen": ""}])
    with pytest.raises(DataError, match=f"^{at(path)}: index 2: field 'chosen': is empty"):
        data.load_preference_file(path)


@pytest.mark.parametrize("name, content, problem", [
    ("bad.json", '[\n  {"id": 1,\n   "prompt": "a"\n  "support": "b"}\n]', "malformed JSON at line 4, column 3"),
    ("bad.jsonl", '{"chosen": "a", "rejected": "b"}\n\n{"chosen": "a" "rejected": "b"}\n', "line 3: malformed"),
    ("empty.jsonl", "", "no rows"),
    ("blank.jsonl", "\n  \n", "no rows"),
    ("empty.json", "[]", "no rows"),
    ("object.json", '{"chosen": "a",\n "rejected": "b"}', "expected a list of objects"),
    ("numbers.jsonl", '{"chosen": "a", "rejected": "b"}\n3\n', "line 2: is a number"),
    ("numbers.json", '[{"chosen": "a", "rejected": "b"}, "x"]', "index 1: is text; expected an object"),
    ("table.csv", "a,b\n", "unsupported file type"),
])
def test_file_errors(tmp_path, name, content, problem):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match=f"^{at(path)}: .*{problem}"):
        data.read_records(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data.check_file(tmp_path / "nothing.jsonl")


def test_unknown_format_names_fields_and_formats(tmp_path):
    path = write(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as caught:
        data.check_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: unknown format") and "['answer', 'question']" in message
    assert all(name in message for name in data.FORMATS)
    with pytest.raises(UserError, match="unknown format 'nope'; known formats: auto, homework"):
        data.check_file(SAMPLES_DIR / "orca.jsonl", "nope")


def test_failed_convert_writes_nothing(tmp_path):
    source = write(tmp_path / "pairs.jsonl", [ORCA, {**ORCA, "rejected": "yes"}])
    out = tmp_path / "out" / "converted.jsonl"
    with pytest.raises(DataError, match="line 2: field 'chosen'"):
        data.convert_file(source, "auto", out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["pairs.jsonl"]  # no temp file, no folder


# ---------------------------------------------------------------- prompt lengths

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained on a few sentences, with a ChatML-like template: no network."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["Should homework be optional?", "學校是否應該禁止手機？", "The capital of France"] * 5,
                            trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>")
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def _lengths(tokenizer, dataset) -> list[int]:
    out = []
    for prompt in dataset["prompt"]:
        encoded = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        out.append(len(encoded["input_ids"] if hasattr(encoded, "keys") else encoded))
    return out


def test_prompt_lengths_conversational(tokenizer):
    pairs = data.load_preference_file(SAMPLES_DIR / "homework.json")
    lengths = _lengths(tokenizer, pairs)
    assert data.check_prompt_lengths(pairs, tokenizer, max(lengths) + 1) == max(lengths)
    limit = sorted(lengths)[2]  # the two longest prompts reach it (the sample's lengths are distinct)
    assert len(set(lengths)) == 4
    first = next(i for i, n in enumerate(lengths) if n >= limit)
    with pytest.raises(DataError, match=rf"^s\.json: id {first + 1}: field 'prompt': 2 of 4 prompts reach "
                                        rf"max_length={limit} tokens on their own \(this one: {lengths[first]}\)"):
        data.check_prompt_lengths(pairs, tokenizer, limit, file="s.json")


def test_prompt_lengths_standard(tokenizer):
    pairs = data.load_preference_file(SAMPLES_DIR / "trl-standard.jsonl")
    lengths = [len(tokenizer(p)["input_ids"]) for p in pairs["prompt"]]
    assert data.check_prompt_lengths(pairs, tokenizer, max(lengths) + 1) == max(lengths)
    with pytest.raises(DataError, match="index 0: field 'prompt': 3 of 3 prompts"):
        data.check_prompt_lengths(pairs, tokenizer, min(lengths))


def test_implicit_prompts_are_not_counted(tokenizer):
    pairs = data.load_preference_file(SAMPLES_DIR / "trl-standard-implicit.jsonl")
    assert data.check_prompt_lengths(pairs, tokenizer, 1) == 0


@pytest.mark.parametrize("text, width, expected", [
    ("short", 10, "short"), ("a  b\n c", 10, "a b c"), ("abcdefghij", 10, "abcdefghij"), ("abcdefghijk", 10, "abcdefghi…"),
])
def test_shorten(text, width, expected):
    assert data.shorten(text, width) == expected


def test_pairs_table_shows_one_line_per_pair():
    pairs = data.make_preference_pairs(homework_rows(3), 0.34)  # floor(3 × 0.34) = 1 support row
    table = data.pairs_table(pairs, width=8)
    assert list(table.columns) == ["id", "prompt", "chosen", "rejected", "preferred"]
    assert list(table["preferred"]) == ["support", "oppose", "oppose"] and list(table["id"]) == list(pairs["id"])
    assert all(len(text) <= 8 for column in ("prompt", "chosen", "rejected") for text in table[column])
    implicit = data.pairs_table([{"chosen": "yes", "rejected": "no"}])
    assert list(implicit.columns) == ["chosen", "rejected"] and implicit.iloc[0].tolist() == ["yes", "no"]
    hh = data.pairs_table(data.load_preference_file(SAMPLES_DIR / "hh-rlhf.jsonl"), width=200)
    assert hh.loc[1, "prompt"] == "[3 turns] Something longer, please."


def test_token_texts_show_whole_characters(tokenizer):
    from helpers.templates import token_texts

    text = "真人版 is live action"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids), "the sample should split a character over tokens"
    texts = token_texts(tokenizer, ids)
    assert len(texts) == len(ids) and "".join(texts) == text
    assert not any("\ufffd" in t for t in texts)
