"""`python -m helpers bench-data`: data check and convert on a big hh-rlhf-style file, the streamed path beside the
previous whole-file path, each run in its own child process (rows per second and peak resident memory).

The previous path is kept here, for this comparison only: the whole file read into one string, every line parsed
into a list, a Dataset built from all the pairs, and convert writing Dataset.to_list() as one string. Both paths
run the same row checks (helpers.data_formats.convert_rows) and skip the same bad rows, so only the reading and the
writing differ; the bench checks that both write the same bytes.
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.files import write_json_atomic

WORDS = ("the a an it that this you your we can could should would may might will is are was be have has do not "
         "and or but if so because when then there here what why how which who water time day people way thing "
         "make take give find think know help want need try use work call ask tell feel seem leave keep start show "
         "good new first last long great little own other old right big high different small large next early "
         "important few public bad same able").split()
TASKS = ("check, streamed", "check, whole file", "convert to JSONL, streamed", "convert to JSONL, whole file",
         "convert to Parquet, streamed", "imports only")


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + rng.choice(".?!")


def _transcript(turns: list[tuple[str, str]]) -> str:
    return "".join(f"\n\n{who}: {text}" for who, text in turns)


def make_hh_file(path: Path, rows: int = 100_000, repeats: int = 20, seed: int = 0) -> dict:
    """Write an hh-rlhf-style JSON Lines file: rows // repeats distinct pairs (1–3 exchanges, ~1.3 KB a row), each
    appearing `repeats` times in shuffled order, and five bad rows, one of each kind real files hold."""
    rng = random.Random(seed)
    distinct = []
    for _ in range(max(rows // repeats, 1)):
        turns = []
        for _ in range(rng.randint(1, 3)):
            turns += [("Human", _sentence(rng, rng.randint(8, 30))), ("Assistant", _sentence(rng, rng.randint(20, 90)))]
        answer, worse = _sentence(rng, rng.randint(20, 90)), _sentence(rng, rng.randint(10, 60))
        distinct.append({"chosen": _transcript(turns[:-1] + [("Assistant", answer)]),
                         "rejected": _transcript(turns[:-1] + [("Assistant", worse)])})
    lines = [distinct[i % len(distinct)] for i in range(rows)]
    rng.shuffle(lines)
    question = ("Human", "How do I boil an egg?")
    bad = [{"chosen": _transcript([question, ("Assistant", "About nine minutes.")]),  # an empty final reply
            "rejected": _transcript([question, ("Assistant", "")])},
           {"chosen": _transcript([question, question, ("Assistant", "Nine minutes.")]),  # two Human turns in a row
            "rejected": _transcript([question, question, ("Assistant", "An hour.")])},
           {"chosen": _transcript([question, ("Assistant", "Nine minutes.  Human: soft?"), ("Assistant", "Six.")]),
            "rejected": _transcript([question, ("Assistant", "Nine minutes.  Human: soft?"), ("Assistant", "Ten.")])},
           {"chosen": _transcript([question, ("Assistant", "Same.")]),  # chosen == rejected
            "rejected": _transcript([question, ("Assistant", "Same.")])},
           {"chosen": _transcript([question]), "rejected": _transcript([question])}]  # no answer at all
    bad_lines = sorted(rng.sample(range(rows), len(bad)))
    for index, record in zip(bad_lines, bad):
        lines[index] = record
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in lines)
    return {"rows": rows, "distinct_pairs": len(distinct), "bad_lines": [i + 1 for i in bad_lines],
            "megabytes": round(path.stat().st_size / 1e6, 1)}


# ---------------------------------------------------------------- the previous whole-file path


def _whole_file_pairs(path: Path):
    """The previous path: read the whole file, parse every line into a list, convert all rows, build a Dataset."""
    from datasets import Dataset

    from helpers.data_formats import convert_rows, detect_format
    from helpers.data_skipped import Skipped

    text = path.read_text(encoding="utf-8-sig")
    records, places = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            records.append(json.loads(line))
            places.append(f"line {number}")
    name = detect_format(records, path)
    return len(records), Dataset.from_list(list(convert_rows(zip(places, records), name, path, Skipped())))


def _child(task: str, source: Path, out: Path) -> dict:
    """Do one task in this process and measure it (imports not counted in the time, counted in the memory)."""
    from helpers import data
    from helpers.bench_runs import own_peak_mb
    from helpers.files import write_jsonl_atomic

    start, rows, pairs = time.perf_counter(), 0, 0
    if task == "check, streamed":
        report = data.check_file(source, skip_bad_rows=True)
        rows, pairs = report.rows, report.pairs
    elif task.startswith("convert to") and task.endswith("streamed"):
        target = out.with_suffix(".parquet") if "Parquet" in task else out
        report = data.convert_file(source, "auto", target, skip_bad_rows=True)
        rows, pairs = report.rows, report.pairs
    elif task != "imports only":
        rows, dataset = _whole_file_pairs(source)
        pairs = len(dataset)
        if task.startswith("convert"):
            write_jsonl_atomic(out, dataset.to_list())
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "rows": rows, "pairs": pairs, "peak_rss_mb": own_peak_mb(),
            "rows_per_second": round(rows / seconds) if rows else None}


def run_data_bench(out_dir: Path, rows: int = 100_000, file: Path | None = None, echo=print) -> dict:
    """Generate the file (or take `file`), run every task in a fresh interpreter, write out_dir/bench_data.json."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(file) if file else Path(scratch) / "hh-rlhf-style.jsonl"
        facts = {"file": str(file)} if file else make_hh_file(source, rows)
        runs = {}
        for task in TASKS:
            out = Path(scratch) / ("whole" if "whole" in task else "streamed") / "pairs.jsonl"
            done = subprocess.run([sys.executable, "-m", "helpers.data_bench", task, str(source), str(out)],
                                  env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{task} failed: {done.stderr.strip().splitlines()[-1:]}")
            runs[task] = json.loads(done.stdout.strip().splitlines()[-1])
            echo(f"{task}: {runs[task]}")
        same = filecmp.cmp(Path(scratch) / "streamed" / "pairs.jsonl", Path(scratch) / "whole" / "pairs.jsonl",
                           shallow=False)
    report = {"file": facts, "runs": runs, "same_output": same,
              "speedup": {kind: round(runs[f"{kind}, whole file"]["seconds"] / runs[f"{kind}, streamed"]["seconds"], 2)
                          for kind in ("check", "convert to JSONL")},
              "note": "seconds exclude starting Python and imports; peak RSS includes them (see 'imports only')"}
    write_json_atomic(Path(out_dir) / "bench_data.json", report)
    return report


def data_bench_table(report: dict):
    """One row per task: seconds, rows per second, pairs kept and peak memory."""
    import pandas as pd

    table = pd.DataFrame(report["runs"]).T[["seconds", "rows_per_second", "pairs", "peak_rss_mb"]]
    return table.rename_axis(f"same output: {report['same_output']}")


if __name__ == "__main__":  # a child process: python -m helpers.data_bench TASK SOURCE OUT
    print(json.dumps(_child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
