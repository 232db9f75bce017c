"""`python -m helpers homework check`: files the project's writer makes pass; each broken one is one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli
from helpers.errors import DataError
from helpers.homework import load_homework_preset
from helpers.homework_check import check_result_file, name_pattern, summary_line
from helpers.homework_data import load_test_prompts

ROOT = Path(__file__).resolve().parent.parent
HW7_TESTS = ROOT / "assets" / "data" / "rehearsal" / "hw7" / "test.json"
STUDENT = "B12345678"


def hw6_rows() -> list[dict]:
    """Ten invented HW6-style test prompts, ids 1–10 as in the course's test_prompt.json."""
    return [{"id": i, "prompt": f"第{i}題：這部漫畫適合拍成真人影集嗎？"} for i in range(1, 11)]


def answers(tag: str, chinese: bool) -> list[str]:
    """Ten answers: one empty (a model that stops at once), one far over the courses' length limit, quotes, newlines."""
    base = "真人化能吸引新觀眾。" if chinese else "It could bring “new” fans; café art\nand more."
    rows = [f"{tag} {i}: {base}" for i in range(10)]
    rows[3], rows[7] = "", base * 40
    return rows


def write(tmp_path: Path, name: str, num_epoch=1, data_size=50, support_ratio=0.1, folder: str = "out") -> Path:
    """A result file written by the project's own writer, as a run writes it."""
    preset = load_homework_preset(name)
    rows = hw6_rows() if name == "hw6" else load_test_prompts(HW7_TESTS)
    chinese = name == "hw6"
    return preset.write_result(tmp_path / folder, rows, answers("base", chinese), answers("dpo", chinese), num_epoch,
                               data_size, support_ratio, student_id=STUDENT if name == "hw7" else None)


def rewrite(path: Path, change=lambda payload: payload, ensure_ascii: bool | None = None,
            name: str | None = None) -> Path:
    """The file with its payload replaced by change(payload), dumped as the course does (or with ensure_ascii), under
    its name or name."""
    preset = load_homework_preset("hw6" if path.name.startswith("epoch-") else "hw7")
    payload = change(json.loads(path.read_text(encoding="utf-8")))
    text = json.dumps(payload, indent=4, ensure_ascii=preset.ensure_ascii if ensure_ascii is None else ensure_ascii)
    target = path.with_name(name or path.name)
    path.unlink()
    target.write_text(text, encoding="utf-8")
    return target


def records(payload):
    """The list of answer records, whichever homework."""
    return payload["results"] if isinstance(payload, dict) else payload


def edit(index: int, key: str, value=None, rename: str | None = None, drop: bool = False):
    """A change to one record's key: a new value, a new name for the key (its place kept), or the key dropped."""
    def change(payload):
        record = records(payload)[index]
        if drop:
            record.pop(key)
        elif rename:
            records(payload)[index] = {(rename if k == key else k): v for k, v in record.items()}
        else:
            record[key] = value
        return payload
    return change


def run_check(*args: str) -> subprocess.CompletedProcess:
    """The command in a fresh process, offline, from the project folder (without DPO_THREADS: no torch to set up)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("DPO_THREADS", None)
    return subprocess.run([sys.executable, "-m", "helpers", "homework", "check", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


# ---------------------------------------------------------------- files the project writes pass


@pytest.mark.parametrize("name", ["hw6", "hw7"])
def test_the_writers_files_pass_with_the_knobs_of_their_name(name, tmp_path):
    path = write(tmp_path, name, num_epoch=3, data_size=10, support_ratio=1)
    summary = check_result_file(path)
    knobs = {"num_epoch": "3", "data_size": "10", "support_ratio": "1"}
    assert summary["homework"] == name and summary["records"] == 10
    assert summary["knobs"] == ({"student_id": STUDENT, **knobs} if name == "hw7" else knobs)
    assert summary["ids"] == list(load_homework_preset(name).test_ids)
    assert check_result_file(path, homework=name) == summary


def test_the_command_prints_one_line_for_each_homework(tmp_path):
    for name, knobs, ids in (("hw6", "num_epoch 1, data_size 50, support_ratio 0.1", "1–10"),
                             ("hw7", f"student_id {STUDENT}, num_epoch 1, support_ratio 0.1, data_size 50", "51–60")):
        path = write(tmp_path, name, folder=name)
        done = run_check(str(path))
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"{path}: ok, a {name} result file; {knobs}; 10 answers, ids {ids}"]
        assert done.stdout.strip() == summary_line(check_result_file(path))


def test_the_test_prompt_file_is_compared_id_for_id(tmp_path):
    assert check_result_file(write(tmp_path, "hw7"), test_prompts=HW7_TESTS)["records"] == 10
    tests = tmp_path / "test_prompt.json"
    tests.write_text(json.dumps(hw6_rows(), ensure_ascii=False), encoding="utf-8")
    path = write(tmp_path, "hw6")
    assert check_result_file(path, test_prompts=tests)["ids"] == list(range(1, 11))
    changed = [dict(row, prompt=row["prompt"] + "？") if row["id"] == 4 else row for row in hw6_rows()]
    tests.write_text(json.dumps(changed, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"index 3 \(id 4\): field 'prompt': is not .*test_prompt.json's prompt"):
        check_result_file(path, test_prompts=tests)
    tests.write_text(json.dumps(hw6_rows()[:9], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"ids are not those of .*test_prompt.json \(9 prompts, ids 1–9\)"):
        check_result_file(path, test_prompts=tests)


def test_a_final_newline_and_windows_line_ends_pass_more_does_not(tmp_path):
    path = write(tmp_path, "hw6")
    text = path.read_text(encoding="utf-8")
    path.write_bytes((text + "\n").replace("\n", "\r\n").encode("utf-8"))
    assert check_result_file(path)["records"] == 10
    path.write_text(text + "\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 63: has more text after the course's json.dump output"):
        check_result_file(path)


def test_the_name_patterns_come_from_the_presets():
    assert name_pattern(load_homework_preset("hw6")).fullmatch("epoch-1.0_size-50_ratio-0.25.json")
    assert not name_pattern(load_homework_preset("hw6")).fullmatch("epoch-1_size-50_ratio-0.25.json.bak")
    found = name_pattern(load_homework_preset("hw7")).fullmatch("r1_x_hw7_epoch3_ratio1_size10.json")
    assert found.groupdict() == {"student_id": "r1_x", "num_epoch": "3", "support_ratio": "1", "data_size": "10"}


# ---------------------------------------------------------------- broken files: one line, exit 2, through the command


def _wrong_order(payload):
    records(payload)[5] = dict(reversed(list(records(payload)[5].items())))
    return payload


def _nine_records(payload):
    records(payload).pop()
    return payload


def _not_json(path):
    path.write_text(path.read_text(encoding="utf-8").replace('"id": 57,', '"id": 57'), encoding="utf-8")
    return path


BROKEN = {  # case: (homework, how to break the writer's file, what the one line says after the file's name)
    "wrong key": ("hw6", lambda p: rewrite(p, edit(2, "response_from_trained_model", rename="answer")),
                  "index 2 (id 3): field 'response_from_trained_model': is missing; found 'answer' instead"),
    "missing id": ("hw7", lambda p: rewrite(p, edit(4, "id", drop=True)), "index 4: field 'id': is missing"),
    "escaped chinese": ("hw6", lambda p: rewrite(p, ensure_ascii=True),
                        "line 4: non-ASCII text written as \\u escapes (\\u7b2c is '第'); the course writes it as is: "
                        "json.dump(..., ensure_ascii=False)"),
    "wrong key order": ("hw7", lambda p: rewrite(p, _wrong_order),
                        "index 5 (id 56): keys are in the order aligned_response, original_response, prompt, id; "
                        "the course writes id, prompt, original_response, aligned_response"),
    "name disagrees": ("hw7", lambda p: rewrite(p, name=p.name.replace("epoch1", "epoch3")),
                       "field 'num_epoch': is 1, but the file name says 3"),
    "nine records": ("hw6", lambda p: rewrite(p, _nine_records),
                     "has 9 records; hw6's file has 10, one per test prompt (ids 1–10)"),
    "not json": ("hw7", _not_json, "line 44: is not JSON: Expecting ',' delimiter (column 13)"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_file_is_one_line_and_exit_2(case, tmp_path):
    name, breaks, words = BROKEN[case]
    path = breaks(write(tmp_path, name))
    done = run_check(str(path))
    assert done.returncode == 2, done.stdout
    assert done.stdout == "" and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {path}: {words}"), line


# ---------------------------------------------------------------- more ways to be wrong, in-process


@pytest.mark.parametrize("name, change, words", [
    ("hw6", edit(1, "id", 1), "id 1 appears 2 times"),
    ("hw6", edit(9, "id", 11), "ids are not hw6's test prompts 1–10: missing 10, unexpected 11"),
    ("hw7", edit(0, "id", "51"), "index 0: field 'id': is text; expected an integer"),
    ("hw7", edit(6, "aligned_response", None), "index 6 (id 57): field 'aligned_response': is null; expected text"),
    ("hw6", edit(0, "prompt", " "), "index 0 (id 1): field 'prompt': is empty"),
    ("hw7", lambda p: {**p, "support_ratio": "0.1"}, "field 'support_ratio': is text; expected a number"),
    ("hw7", lambda p: {k: v for k, v in p.items() if k != "data_size"}, "field 'data_size': is missing"),
    ("hw7", records, "is a list; hw7's file is an object (num_epoch, data_size, support_ratio, results)"),
    ("hw6", lambda p: {"results": p}, "is an object; expected a list of records"),
])
def test_the_first_problem_is_named(name, change, words, tmp_path):
    path = rewrite(write(tmp_path, name), change)
    with pytest.raises(DataError) as error:
        check_result_file(path)
    assert str(error.value).startswith(f"{path}: {words}"), str(error.value)


def test_text_not_as_the_course_dumps_it(tmp_path):
    hw6 = write(tmp_path, "hw6", folder="hw6")
    hw6.write_text(json.dumps(json.loads(hw6.read_text(encoding="utf-8")), indent=2, ensure_ascii=False),
                   encoding="utf-8")
    with pytest.raises(DataError, match="line 2: is indented by 2 spaces, not 4"):
        check_result_file(hw6)
    hw7 = rewrite(write(tmp_path, "hw7", folder="hw7"), ensure_ascii=False)
    with pytest.raises(DataError, match=r"non-ASCII character '“'; the course escapes it \(\\u201c\)"):
        check_result_file(hw7)


def test_names_and_homeworks(tmp_path):
    path = write(tmp_path, "hw7")
    with pytest.raises(DataError, match=r"the name is not hw6's epoch-\{num_epoch\}.* \(it is hw7's\)"):
        check_result_file(path, homework="hw6")
    other = path.rename(tmp_path / "results.json")
    with pytest.raises(DataError, match="the name matches no homework's result file"):
        check_result_file(other)
    assert cli.main(["homework", "check", str(other), "--homework", "hw8"]) == 2
    out_of_range = write(tmp_path, "hw6", support_ratio=1.5)
    with pytest.raises(DataError, match="the name's support_ratio is 1.5; allowed: a number at least 0 and at most 1"):
        check_result_file(out_of_range)
    with pytest.raises(DataError, match="file not found"):
        check_result_file(tmp_path / "epoch-1_size-50_ratio-1.json")


def test_the_checker_imports_neither_torch_nor_transformers():
    code = "import sys, helpers.homework_check; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    assert done.stdout.strip() == "[]"
