"""The course presets: result files exactly as the course's notebooks write them, the course's split, the knobs
checked before anything loads, a missing student_id, and the dry run's settings and memory estimate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli, data, homework_data
from helpers.errors import UserError
from helpers.folders import is_complete
from helpers.homework import HOMEWORKS, load_homework_preset
from helpers.knobs import KnobError, check_knobs
from helpers.runs import RunConfig

ROOT = Path(__file__).resolve().parent.parent
HW7_DIR = ROOT / "assets" / "data" / "rehearsal" / "hw7"
BUNDLED = ROOT / "assets" / "data"
OFFLINE = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")


# ---------------------------------------------------------------- the course's writers, as their notebooks do it


def course_hw6_file(folder: Path, test_data, original, trained, num_epoch, data_size, support_ratio) -> Path:
    """GenAI 2024 HW6's last cells: a list of four-key records, json.dump(indent=4, ensure_ascii=False), UTF-8."""
    model_response = []
    for row, ref_output, output in zip(test_data, original, trained):
        model_response.append({"id": row["id"], "prompt": row["prompt"], "response_from_original_model": ref_output,
                               "response_from_trained_model": output})
    path = folder / f"epoch-{num_epoch}_size-{data_size}_ratio-{support_ratio}.json"
    with open(path, "w", encoding="UTF-8") as outfile:
        json.dump(model_response, outfile, indent=4, ensure_ascii=False)
    return path


def course_hw7_file(folder: Path, student_id, test_data, original, trained, num_epoch, data_size,
                    support_ratio) -> Path:
    """ML2025 HW7's last cell: the knobs and a "results" list, json.dump(indent=4) with its default ensure_ascii."""
    output_list = [{"id": row["id"], "prompt": row["prompt"], "original_response": before, "aligned_response": after}
                   for row, before, after in zip(test_data, original, trained)]
    output_data = {"num_epoch": num_epoch, "data_size": data_size, "support_ratio": support_ratio,
                   "results": output_list}
    path = folder / f"{student_id}_hw7_epoch{num_epoch}_ratio{support_ratio}_size{data_size}.json"
    with open(path, "w") as output_file:
        json.dump(output_data, output_file, indent=4)
    return path


TRICKY = ["真人化能吸引新觀眾。", "Café “quotes” — and a tab\there", 'a "quoted" line\nand a second']


@pytest.mark.parametrize("name", ["hw6", "hw7"])
def test_writer_matches_the_course_byte_for_byte(name, tmp_path):
    preset = load_homework_preset(name)
    rows = [{"id": 51 + i, "prompt": f"prompt {i} 問題"} for i in range(3)]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    theirs.mkdir()
    knobs = dict(num_epoch=3, data_size=50, support_ratio=0.1)
    written = preset.write_result(ours, rows, TRICKY, TRICKY[::-1], student_id="B12345678", **knobs)
    if name == "hw6":
        expected = course_hw6_file(theirs, rows, TRICKY, TRICKY[::-1], **knobs)
    else:
        expected = course_hw7_file(theirs, "B12345678", rows, TRICKY, TRICKY[::-1], **knobs)
    assert written.name == expected.name
    assert written.read_bytes() == expected.read_bytes()


def test_file_names_keep_the_numbers_as_typed():
    hw6, hw7 = HOMEWORKS["hw6"], HOMEWORKS["hw7"]
    assert hw6.result_file_name(1, 50, 0.1) == "epoch-1_size-50_ratio-0.1.json"
    assert hw6.result_file_name(3, 10, 1.0) == "epoch-3_size-10_ratio-1.0.json"  # what f"{1.0}" prints
    assert hw7.result_file_name(3, 10, 0, "B12345678") == "B12345678_hw7_epoch3_ratio0_size10.json"
    assert cli.run_config(cli.build_parser().parse_args(
        ["run", "--support-ratio", "1", "--num-epoch", "2", "--out", "x"])).support_ratio.__class__ is int


# ---------------------------------------------------------------- tiny runs through the command line


def _run_homework(name: str, out: Path, extra: list[str]) -> int:
    files = (["--data", str(HW7_DIR / "train.json"), "--test-prompts", str(HW7_DIR / "test.json")] if name == "hw7"
             else ["--data", str(BUNDLED / "labelled_data.json"), "--test-prompts", str(BUNDLED / "test_prompt.json")])
    return cli.main(["run", "--homework", name, "--profile", "tiny", *files, "--support-ratio", "0.1",
                     "--data-size", "10", "--num-epoch", "1", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def homework_runs(tmp_path_factory):
    """One tiny run per preset (10 pairs, one epoch; the other labelled rows held out), made through `run`."""
    folder = tmp_path_factory.mktemp("homework")
    codes = {"hw6": _run_homework("hw6", folder / "hw6", []),
             "hw7": _run_homework("hw7", folder / "hw7", ["--student-id", "B12345678"])}
    return folder, codes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hw6", "hw7"])
def test_tiny_run_writes_the_course_result_file(homework_runs, name, tmp_path):
    folder, codes = homework_runs
    assert codes[name] == 0
    run = folder / name
    answers = json.loads((run / "answers.json").read_text(encoding="utf-8"))
    tests = [{"id": a["id"], "prompt": a["prompt"]} for a in answers]
    base, trained = [a["base"] for a in answers], [a["dpo"] for a in answers]
    if name == "hw6":
        expected = course_hw6_file(tmp_path, tests, base, trained, 1, 10, 0.1)
    else:
        expected = course_hw7_file(tmp_path, "B12345678", tests, base, trained, 1, 10, 0.1)
    assert (run / expected.name).read_bytes() == expected.read_bytes()
    assert not (run / "epoch-1_size-10_ratio-0.1.json").exists() or name == "hw6"  # no generic file beside it
    if name == "hw7":
        assert [a["id"] for a in answers] == list(range(51, 61))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["model"]["model_name"] == "tiny" and metrics["model"]["is_course_model"] is False
    assert "do not submit" in metrics["model"]["warning"]
    assert metrics["split"] == {"rule": "course", "pairs": 10, "support_preferred": 1}
    assert metrics["holdout"]["method"] == "rest" and metrics["holdout"]["first_row"] == 10
    assert "sft" not in metrics["stages"], "the courses run no SFT stage"
    assert 0 <= metrics["stages"]["dpo"]["support_rate"] <= 1


@pytest.mark.slow
def test_run_seeds_reuses_a_saved_seed_trains_the_other_and_summarises(homework_runs, tmp_path, capsys):
    """`run --seeds 42,43`: the fixture's seed-42 run, copied into OUT/seed-42, is reused; seed 43 is trained."""
    folder, codes = homework_runs
    assert codes["hw6"] == 0
    out = tmp_path / "seeds"
    shutil.copytree(folder / "hw6", out / "seed-42")
    command = ["run", "--homework", "hw6", "--profile", "tiny", "--data", str(BUNDLED / "labelled_data.json"),
               "--test-prompts", str(BUNDLED / "test_prompt.json"), "--support-ratio", "0.1", "--data-size", "10",
               "--num-epoch", "1", "--seeds", "42,43", "--out", str(out)]
    before = (out / "seed-42" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(command) == 0
    printed = capsys.readouterr().out
    assert "seed 42: the saved run" in printed and "seed 43: training" in printed and "95 % interval" in printed
    assert (out / "seed-42" / "metrics.json").stat().st_mtime_ns == before and is_complete(out / "seed-43")
    saved = json.loads((out / "summary.json").read_text())
    row = next(r for r in saved["summary"] if r["stage"] == "dpo" and r["metric"] == "support_rate")
    per_seed = [json.loads((out / f"seed-{s}" / "metrics.json").read_text())["stages"]["dpo"]["support_rate"]
                for s in (42, 43)]
    assert row["per_seed"] == {"42": per_seed[0], "43": per_seed[1]} and row["interval"] == "seeds and rows"
    assert row["mean"] == pytest.approx(sum(per_seed) / 2) and row["low"] <= row["mean"] <= row["high"]
    assert cli.main([*command[:-4], "--seeds", "1,1", "--out", str(out)]) == 2
    assert cli.main([*command[:-4], "--seed", "1", "--seeds", "1,2", "--out", str(out)]) == 2


# ---------------------------------------------------------------- the course's split


@pytest.mark.parametrize("name", ["hw6", "hw7"])
def test_split_is_the_course_int_for_every_size_and_ratio(name):
    rows = data.load_homework(HW7_DIR / "train.json")
    rule = HOMEWORKS[name].split_rule
    differs = []
    for size in range(10, 51):
        for ratio in [i / 10 for i in range(11)]:
            pairs = data.make_preference_pairs(rows, ratio, size, split_rule=rule)
            k = int(size * ratio)
            assert list(pairs["preferred"]) == ["support"] * k + ["oppose"] * (size - k), (size, ratio)
            if data.n_support_preferred(size, ratio) != k:
                differs.append((size, ratio))
    assert differs == []  # on this grid the exact rule agrees; of the two-decimal ratios only 50 × 0.58 differs
    assert data.n_support_preferred(50, 0.58, rule=rule) == 28 and data.n_support_preferred(50, 0.58) == 29


# ---------------------------------------------------------------- bad values fail before anything loads


@pytest.mark.parametrize("flag, value, knob, allowed", [
    ("--num-epoch", "0", "num_epoch", "greater than 0"),
    ("--num-epoch", "-1", "num_epoch", "greater than 0"),
    ("--beta", "-1", "beta", "greater than 0"),
    ("--learning-rate", "0", "learning_rate", "greater than 0"),
    ("--support-ratio", "1.5", "support_ratio", "at most 1"),
    ("--data-size", "0", "data_size", "at least 1"),
    ("--num-epoch", "three", "num_epoch", "a number"),
    ("--seed", "-3", "seed", "at least 0"),
])
def test_bad_knob_is_one_line_exit_2_nothing_written(flag, value, knob, allowed, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--profile", "tiny", "--support-ratio", "1", "--out", str(out), flag, value]
    assert cli.main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {knob} ({flag}) is"), lines
    assert allowed in lines[0]
    assert not out.exists()


def test_knobs_are_checked_in_run_config_and_for_notebooks():
    with pytest.raises(KnobError, match=r"num_epoch .* -1"):
        RunConfig(num_epoch=-1)
    with pytest.raises(KnobError, match="beta"):
        check_knobs(beta=-1.0)
    assert check_knobs(support_ratio=0.5, data_size=None, num_epoch=3) == {"support_ratio": 0.5, "data_size": None,
                                                                            "num_epoch": 3}


def test_missing_student_id_fails_fast_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "helpers", "run", "--homework", "hw7", "--profile", "tiny",
                           "--data", str(HW7_DIR / "train.json"), "--test-prompts", str(HW7_DIR / "test.json"),
                           "--support-ratio", "0.1", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=OFFLINE, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "student_id (--student-id) is missing" in lines[0], done.stderr
    assert not out.exists() and not list(tmp_path.glob("None_hw7*"))


@pytest.mark.parametrize("args, words", [
    (["--homework", "hw6"], ["hw6's model MediaTek-Research/Breeze-7B-Instruct-v0_1 needs a CUDA GPU", "--profile tiny"]),
    (["--homework", "hw9"], ["unknown homework 'hw9'", "hw6, hw7"]),
    (["--homework", "hw7", "--profile", "tiny"], ["needs the course's files", "train.json", "test.json"]),
], ids=["course-model-on-cpu", "unknown-homework", "no-course-files"])
def test_homework_requests_fail_in_one_line(args, words, tmp_path, capsys, monkeypatch):
    from helpers import homework

    monkeypatch.setattr(homework, "has_gpu", lambda: False)  # as on this CPU
    files = [] if "hw7" in args else ["--data", str(BUNDLED / "labelled_data.json"),
                                      "--test-prompts", str(BUNDLED / "test_prompt.json")]
    out = tmp_path / "run"
    assert cli.main(["run", *args, *files, "--support-ratio", "0.1", "--out", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and all(word in lines[0] for word in words), lines
    assert not out.exists()


@pytest.mark.slow
def test_papermill_parameter_is_checked_in_one_line(tmp_path):
    """A bad -p value stops notebook 04 at the check after its parameters cell, with one line, before any model."""
    out = tmp_path / "04.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", "--kernel", "python3", "--cwd", "notebooks",
                           "-p", "num_epoch", "-1", "notebooks/04_dpo.ipynb", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=OFFLINE, timeout=300)
    assert done.returncode != 0
    notebook = json.loads(out.read_text(encoding="utf-8"))
    errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0]["traceback"] == [
        "error: num_epoch (--num-epoch) is -1; allowed: a number greater than 0 and at most 100"]
    ran = [c for c in notebook["cells"] if c["cell_type"] == "code" and c.get("execution_count")]
    assert not any("get_sft_model" in "".join(c["source"]) for c in ran), "a model was loaded after the bad value"


# ---------------------------------------------------------------- the dry run and the memory estimate


def test_dry_run_prints_settings_and_a_memory_estimate(capsys):
    assert cli.main(["run", "--dry-run", "--homework", "hw7", "--student-id", "B12345678",
                     "--support-ratio", "0.1", "--num-epoch", "1"]) == 0
    text = capsys.readouterr().out
    for expected in ("unsloth/llama-3-8b-Instruct", "target_modules=('q_proj', 'k_proj', 'v_proj', 'o_proj'",
                     "per_device_train_batch_size = 2", "gradient_accumulation_steps = 4", "warmup_steps = 0.1",
                     "seed = 42", "fp16 = True", "B12345678_hw7_epoch1_ratio0.1_size50.json", "5 prefer support",
                     "41.9M in LoRA", "8.03B parameters", "fits a T4"):
        assert expected in text, expected


def test_memory_estimate_counts_the_models_exactly():
    from helpers.memory import estimate_peak_memory

    hw6 = estimate_peak_memory(HOMEWORKS["hw6"].course_profile())
    hw7 = estimate_peak_memory(HOMEWORKS["hw7"].course_profile())
    assert hw7["parameters"] == 8_030_261_248  # Llama-3-8B
    assert hw7["lora_parameters"] == 41_943_040  # what HW7's notebook prints as its trainable parameters
    assert hw6["lora_parameters"] == 32 * 64 * ((4096 + 4096) + (4096 + 1024))  # r 64 on q_proj and v_proj
    for estimate in (hw6, hw7):
        gib = estimate["gib"]
        assert 4 < gib["weights"] < 6 and gib["total"] == pytest.approx(
            gib["weights"] + max(gib["training"], gib["measuring"]) + gib["cuda_context"], abs=0.02)
    assert hw7["gib"]["training"] > hw6["gib"]["training"]  # batch 2 against batch 1


def test_clone_says_where_the_hw7_data_lives_when_offline(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        return subprocess.CompletedProcess(args[0], 128, "", "fatal: unable to access: Could not resolve host")

    monkeypatch.setattr(homework_data.subprocess, "run", offline)
    with pytest.raises(UserError) as caught:
        data.clone_homework_data(tmp_path / "hw7", course="hw7")
    message = str(caught.value)
    assert "gitlab.com/lchengtw/ML2025Spring-HW7" in message and "train.json and test.json" in message
    assert "\n" not in message
