"""`python -m helpers data check|convert`: a few real subprocesses, the rest in-process through cli.main."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli, data
from helpers.config import PROJECT_ROOT, SAMPLES_DIR

BAD_JSONL = '{"chosen": "a", "rejected": "b"}\n{"chosen": "a", "rejected": "a"}\n'


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The command line in a fresh process, offline, from the project folder."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.run([sys.executable, "-m", "helpers", "data", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_check_in_a_subprocess():
    result = run_cli("check", "assets/samples/orca.jsonl")
    assert result.returncode == 0, result.stderr
    assert "assets/samples/orca.jsonl: format orca, 3 valid pairs" in result.stdout


def test_convert_in_a_subprocess(tmp_path):
    out = tmp_path / "pairs.jsonl"
    result = run_cli("convert", "assets/samples/multi-turn.json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"format multi-turn, wrote 2 pairs to {out}" in result.stdout
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [len(r["prompt"]) for r in records] == [3, 1]
    again = data.load_preference_file(out)
    assert again.to_list() == data.load_preference_file(SAMPLES_DIR / "multi-turn.json").to_list()


def test_bad_input_in_a_subprocess(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text(BAD_JSONL, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_cli("convert", str(source), "--out", str(out))
    assert result.returncode == 2
    expected = f"error: {source}: line 2: field 'chosen': is identical to 'rejected'; the pair teaches nothing"
    assert result.stderr.splitlines() == [expected]
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists()


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES_DIR.glob("*.json*")))
def test_check_every_sample(sample, capsys):
    assert cli.main(["data", "check", str(SAMPLES_DIR / sample)]) == 0
    report = data.check_file(SAMPLES_DIR / sample)
    unit = "conversations" if report.format.startswith("sft") else "pairs"
    first, *rest = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"{re.escape(str(SAMPLES_DIR / sample))}: format {report.format}, {report.pairs} valid {unit} "
                        rf"\({report.rows} rows in [\d.]+ s, [\d,]+ rows/s\)", first)
    assert rest == [f"no duplicated {unit}"]


@pytest.mark.parametrize("name, content, problem", [
    ("bad.jsonl", BAD_JSONL, "line 2: field 'chosen'"),
    ("broken.jsonl", '{"chosen": "a",\n', "line 1: malformed JSON"),
    ("empty.json", "", "no rows"),
    ("odd.jsonl", '{"title": "x"}\n', "unknown format"),
    ("garbled.jsonl", '{"chosen": "a",\n{"chosen": "a", "rejeted": "b"}\n', "line 1: malformed JSON"),
])
@pytest.mark.parametrize("command", ["check", "convert"])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, name, content, problem, command):
    source = tmp_path / name
    source.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["data", command, str(source)] + (["--out", str(out)] if command == "convert" else [])
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {source}: ") and problem in lines[0]
    assert not out.exists()
    if command == "check" and name == "bad.jsonl":  # a bad row, not a bad file: check reports on the whole file
        assert captured.out.splitlines()[2:4] == ["1 bad row, by reason (the first lines of each):",
                                                  "  1 × field 'chosen': is identical to 'rejected'; the pair teaches "
                                                  "nothing (at line 2)"]
    else:
        assert captured.out == ""


def test_unknown_format_option_exits_2(capsys):
    assert cli.main(["data", "check", str(SAMPLES_DIR / "orca.jsonl"), "--format", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown format 'nope'; known formats: auto, homework")


def test_convert_with_a_named_format(tmp_path, capsys):
    out = tmp_path / "deep" / "ranked.jsonl"
    source = str(SAMPLES_DIR / "ranked.jsonl")
    assert cli.main(["data", "convert", source, "--format", "ranked", "--out", str(out)]) == 0
    assert f"format ranked, wrote 9 pairs to {out} (2 rows in " in capsys.readouterr().out
    assert len(data.load_preference_file(Path(out))) == 9
