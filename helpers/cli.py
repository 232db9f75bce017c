"""The command line: `python -m helpers data check|convert`, `homework check`, `run`, `sweep`, `bench`, `bench-data`,
`export`, `gpu-check`, `build-tiny`, `notebooks`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helpers.data_skipped import Skipped
    from helpers.runs import RunConfig


def _data_check(args: argparse.Namespace) -> int:
    """Every row read: the report on stdout; exit 2, the first bad row on stderr, if a row is bad (unless skipped)."""
    from helpers import data

    report = data.check_file(Path(args.path), args.format, skip_bad_rows=args.skip_bad_rows, progress=True,
                             every_row=True)
    print("\n".join(report.lines()))
    if report.skipped and (not args.skip_bad_rows or not report.pairs):
        print(f"error: {report.skipped.first}", file=sys.stderr)
        return 2
    return 0


def _data_convert(args: argparse.Namespace) -> int:
    from helpers import data

    report = data.convert_file(Path(args.path), args.format, args.out, skip_bad_rows=args.skip_bad_rows,
                               progress=True)
    print("\n".join(report.lines()))
    return 0


def _homework_check(args: argparse.Namespace) -> int:
    from helpers.homework_check import check_result_file, summary_line

    print(summary_line(check_result_file(Path(args.path), args.homework, args.test_prompts)))
    return 0


def run_config(args: argparse.Namespace) -> "RunConfig":
    """The RunConfig the command line asks for: every knob checked; a homework's defaults where not given."""
    from helpers.errors import UserError
    from helpers.config import resolve_profile_name
    from helpers.knobs import KNOBS, KnobError
    from helpers.runs import RunConfig, default_num_epoch

    preset = None
    if args.homework:
        from helpers.homework import load_homework_preset

        preset = load_homework_preset(args.homework)
    if args.support_ratio is None and not args.dry_run:
        raise KnobError(f"support_ratio (--support-ratio) is missing; allowed: {KNOBS['support_ratio'].allowed()}")
    if args.out is None and args.run_name is None and not args.dry_run:
        raise UserError("--out is missing: name the run folder to write, or --run-name NAME for outputs/runs/NAME "
                        "(or pass --dry-run)")
    knobs = {name: KNOBS[name].parse(getattr(args, name))
             for name in ("support_ratio", "data_size", "num_epoch", "beta", "learning_rate", "seed")
             if getattr(args, name) is not None}
    knobs.setdefault("support_ratio", 1.0)
    knobs.setdefault("seed", preset.seed if preset else 0)
    profile = args.profile if preset else resolve_profile_name(args.profile or "auto")
    knobs.setdefault("num_epoch", default_num_epoch(profile, args.homework))
    return RunConfig(profile=profile, spread=args.spread,
                     data=args.data, eval_data=args.eval_data, test_prompts=args.test_prompts, model=args.model,
                     homework=args.homework, student_id=args.student_id, holdout=args.holdout,
                     split_rule=args.split_rule or (preset.split_rule if preset else "exact"),
                     skip_bad_rows=args.skip_bad_rows, name=args.run_name, **knobs)


def _run(args: argparse.Namespace) -> int:
    from helpers.runs import check_resume, check_run_request, metrics_table

    config = run_config(args)
    if args.out is None and config.name:  # --run-name alone: the folder the notebooks read runs from
        from helpers.config import OUTPUTS_DIR

        args.out = str(OUTPUTS_DIR / "runs" / config.name)
    seeds = _seeds(args)
    if args.dry_run:
        from helpers.plan import plan_text, run_plan

        print(plan_text(run_plan(config, args.out or "OUT")))
        if seeds:
            print(f"seeds         {', '.join(map(str, seeds))}: one run each in OUT/seed-N, OUT/summary.json")
        return 0
    if seeds:
        return _run_seeds(args, config, seeds)
    skipped = _skipped_inputs(config)
    if args.resume:  # other settings, or a folder in use, are refused here, before the heavy imports
        check_resume(config, Path(args.out), echo=lambda _: None)
    else:
        check_run_request(config, Path(args.out), args.overwrite)  # bad input fails here, before the heavy imports
    from helpers.pipeline import run_pipeline

    metrics = run_pipeline(config, Path(args.out), overwrite=args.overwrite, echo=lambda _: None,
                           resume=args.resume)
    if not metrics:  # a non-main process of a data-parallel run: the main one reports
        return 0
    if skipped is not None:
        from helpers.files import write_jsonl_atomic

        write_jsonl_atomic(Path(args.out) / "skipped_rows.jsonl", skipped.rows)
    table = metrics_table(metrics)
    print(table[[c for c in table if "/" not in c]].round(3).to_string())
    topics = [c for c in table if c.startswith("probe_support_rate/")]
    if topics:  # the out-of-topic probes, per topic
        print(table[topics].rename(columns=lambda c: c.split("/", 1)[1]).round(3).to_string())
    print(f"total {metrics['timings']['total']:.1f} s; results in {args.out} (95 % intervals over rows: metrics.json)")
    if config.homework:
        print(f"result file: {Path(args.out) / config.answers_file_name(metrics['n_train_pairs'])}")
        if metrics["model"]["warning"]:
            print(metrics["model"]["warning"], file=sys.stderr)
    return 0


def _seeds(args: argparse.Namespace) -> list[int] | None:
    """--seeds as a list of checked seeds (None without it); --seed and --seeds together are refused."""
    if args.seeds is None:
        return None
    from helpers.errors import UserError
    from helpers.knobs import KNOBS

    if args.seed is not None:
        raise UserError("pass --seed or --seeds, not both")
    seeds = [KNOBS["seed"].parse(part.strip()) for part in args.seeds.split(",") if part.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"seeds (--seeds) is {args.seeds!r}; allowed: distinct whole numbers, comma-separated (0,1,2)")
    return seeds


def _run_seeds(args: argparse.Namespace, config: RunConfig, seeds: list[int]) -> int:
    """run --seeds: one run per seed in OUT/seed-N, then the summary over them."""
    from helpers.seeds import check_seeds_request, summary_table

    check_seeds_request(config, seeds, Path(args.out), args.overwrite or args.resume)  # before the heavy imports
    from helpers.seeds import run_seeds

    summary = run_seeds(config, seeds, Path(args.out), overwrite=args.overwrite, resume=args.resume)
    print(summary_table(summary).to_string())
    print(f"{len(seeds)} runs in {args.out}/seed-N; every measurement in {args.out}/summary.json")
    return 0


def _skipped_inputs(config: RunConfig) -> Skipped | None:
    """With skip_bad_rows: the run's input files read once, their skipped rows reported (None without the flag)."""
    if not config.skip_bad_rows:
        return None
    from helpers.runs import is_main_process, load_inputs

    skipped = load_inputs(config).skipped
    if is_main_process():  # a data-parallel run reports once
        print(f"{skipped.summary()}; listed in the run folder's skipped_rows.jsonl" if skipped else skipped.summary())
    return skipped


def _sweep(args: argparse.Namespace) -> int:
    from helpers.folders import check_not_held

    check_not_held(Path(args.out))  # a sweep already writing --out: refused before the heavy imports
    from helpers.plots import plot_sweep
    from helpers.sweep import parse_numbers, point_table, run_sweep, sweep_summary

    sizes = [None if s in ("all", "") else int(s) for s in args.data_sizes.split(",")]
    table = run_sweep(args.profile, parse_numbers(args.ratios), Path(args.out), parse_numbers(args.num_epochs),
                      sizes, parse_numbers(args.seeds, int) if args.seeds else None, beta=args.beta,
                      overwrite=args.overwrite, homework=args.homework, student_id=args.student_id,
                      data=args.data, test_prompts=args.test_prompts)
    summary = sweep_summary(table, Path(args.out) / "runs")
    plot_sweep(table, summary).savefig(Path(args.out) / "sweep.png", dpi=120)
    columns = ["support_ratio", "num_epoch", "data_size", "seed", "reused", "sft_support_rate", "dpo_support_rate",
               "dpo_probe_support_rate", "dpo_generated_support_rate", "dpo_repetition", "dpo_seconds"]
    print(table[[c for c in columns if c in table]].round(3).to_string(index=False))
    dpo = summary[summary["stage"] == "dpo"]
    print(f"\nDPO per point over {table['seed'].nunique()} seed(s): mean and 95 % interval")
    print(point_table(dpo).to_string())
    print(f"results in {args.out}/sweep.json and {args.out}/sweep.png")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from helpers.bench import bench_table, run_bench

    report = run_bench(args.profile, Path(args.out), n_prompts=args.prompts, stance_seeds=args.stance_seeds)
    print(bench_table(report).to_string())
    if report.get("path_stances"):
        from helpers.bench_runs import stance_spread_table

        print(stance_spread_table(report["path_stances"]).to_string(index=False))
    print(f"written to {args.out}/bench.json")
    return 0


def _bench_data(args: argparse.Namespace) -> int:
    from helpers.data_bench import data_bench_table, run_data_bench

    report = run_data_bench(Path(args.out), rows=args.rows, file=Path(args.file) if args.file else None)
    print(data_bench_table(report).to_string())
    print(f"written to {args.out}/bench_data.json")
    return 0


def _export(args: argparse.Namespace) -> int:
    from helpers.export import export_run

    report = export_run(Path(args.run), Path(args.out), push_to_hub=args.push_to_hub, overwrite=args.overwrite)
    print(f"merged model in {report['model_dir']}; same greedy answers as the adapter model: "
          f"{report['same_greedy_answers']}")
    return 0 if report["same_greedy_answers"] else 1


def _gpu_check(args: argparse.Namespace) -> int:
    from helpers.gpu_check import run_gpu_check

    return 0 if run_gpu_check(Path(args.out), args.profile)["ok"] else 1


def _build_tiny(args: argparse.Namespace) -> int:
    from helpers.tiny_model import tiny_model_path

    path = tiny_model_path()
    print((path / "build.json").read_text(encoding="utf-8").strip())
    print(f"tiny model at {path}")
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    from helpers.notebook_opening import sync_notebooks

    changed = sync_notebooks(write=args.write)
    for name in changed:
        print(f"{'rewrote' if args.write else 'out of date'}: {name}")
    if not changed:
        print("every notebook's badges and install cell match helpers/install.py")
    return 1 if changed and not args.write else 0


def _add_homework_options(parser: argparse.ArgumentParser) -> None:
    """--homework and what goes with it, shared by run and sweep."""
    parser.add_argument("--homework", default=None,
                        help="hw6 or hw7, the course's preset: its model, data files, split, seed and result file "
                             "(add --profile tiny to run the path on a CPU)")
    parser.add_argument("--student-id", default=None, help="hw7 names its result file after it")
    parser.add_argument("--data", default=None, help="labelled rows, homework schema (bundled)")
    parser.add_argument("--test-prompts", default=None, help="prompts to answer (bundled)")


SKIP_HELP = "leave invalid rows out and report them, instead of refusing the file"


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data_parser = commands.add_parser("data", help="check or convert a preference data file")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser("check", help="detect the format, read every row, count the valid pairs and the "
                                                   "bad rows by reason (exit 2 if a row is bad)")
    check.add_argument("path")
    check.add_argument("--format", default="auto", help="a format name, or auto to detect it from the fields")
    check.add_argument("--skip-bad-rows", action="store_true", help="exit 0 even if some rows are bad (as convert "
                                                                   "--skip-bad-rows would leave them out)")
    check.set_defaults(func=_data_check)
    convert = data_commands.add_parser("convert", help="write TRL preference records (conversational; trl-standard "
                                                       "input stays standard)")
    convert.add_argument("path")
    convert.add_argument("--format", default="auto")
    convert.add_argument("--out", required=True, help="OUT.jsonl, OUT.parquet, or OUT/ (a save_to_disk folder)")
    convert.add_argument("--skip-bad-rows", action="store_true", help=SKIP_HELP + "; listed in skipped_rows.jsonl "
                                                                                   "beside --out")
    convert.set_defaults(func=_data_convert)

    homework_parser = commands.add_parser("homework", help="check a homework result file")
    homework_commands = homework_parser.add_subparsers(dest="homework_command", required=True)
    result_check = homework_commands.add_parser("check", help="check a result file against its course's format: "
                                                              "name, keys and their order, 10 answers, ids, text")
    result_check.add_argument("path")
    result_check.add_argument("--homework", default=None,
                              help="hw6 or hw7, the homework the file is for (default: detected from its name)")
    result_check.add_argument("--test-prompts", default=None,
                              help="the course's test-prompt file: the answers must be to exactly its prompts")
    result_check.set_defaults(func=_homework_check)

    run = commands.add_parser("run", help="base -> SFT -> DPO, each stage measured; writes DIR/metrics.json")
    run.add_argument("--profile", default=None,
                     help="tiny, qwen2.5-0.5b, breeze-7b, ... (auto: by hardware; with --homework: the course's)")
    run.add_argument("--support-ratio", default=None, help="share of pairs preferring support, 0 to 1 (required)")
    run.add_argument("--data-size", default=None, help="how many labelled rows to train on (all)")
    run.add_argument("--num-epoch", default=None,
                     help="DPO epochs, greater than 0 (the profile's: 3; smollm2-135m and gemma3-270m 1)")
    run.add_argument("--beta", default=None, help="DPO beta, greater than 0 (the profile's, 0.1)")
    run.add_argument("--learning-rate", default=None, help="DPO learning rate, greater than 0 (the profile's)")
    run.add_argument("--spread", action="store_true", help="spread support-preferred rows instead of a prefix")
    _add_homework_options(run)
    run.add_argument("--eval-data", default=None, help="held-out rows for measurement (bundled; with --homework: "
                                                       "rows of the labelled file, see --holdout)")
    run.add_argument("--holdout", default="auto", help="homework runs: auto, rest, kfold-K or none (auto)")
    run.add_argument("--split-rule", choices=("exact", "course"), default=None,
                     help="exact decimal floor, or the course's int(data_size * support_ratio) (with --homework)")
    run.add_argument("--seed", default=None, help="(0; with --homework: the course's 42)")
    run.add_argument("--seeds", default=None, help="several seeds, comma-separated (0,1,2): one run each in "
                                                   "OUT/seed-N, summarised in OUT/summary.json (mean, spread, 95 %%)")
    run.add_argument("--model", default=None, help="a local model folder or hub id instead of the profile's")
    run.add_argument("--out", default=None, help="the run folder to write (required unless --run-name or --dry-run)")
    run.add_argument("--run-name", default=None, help="the run's name: letters, digits, . _ + - (without --out: "
                                                      "writes outputs/runs/NAME; default: named from its settings)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the resolved settings, the DPOConfig, the result file and a memory estimate; "
                          "load nothing")
    run.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its checkpoint")
    run.add_argument("--skip-bad-rows", action="store_true", help=SKIP_HELP + " of the data files; listed in "
                                                                               "DIR/skipped_rows.jsonl")
    run.set_defaults(func=_run, uses_gpu=True)

    sweep = commands.add_parser("sweep", help="one DPO run per knob setting, SFT trained once; sweep.json + sweep.png")
    sweep.add_argument("--profile", default=None, help="(auto: by hardware; with --homework: the course's model)")
    sweep.add_argument("--ratios", default="0,0.25,0.5,0.75,1", help="support ratios, comma-separated")
    sweep.add_argument("--num-epochs", default="3", help="DPO epochs, comma-separated")
    sweep.add_argument("--data-sizes", default="all", help="pair counts, comma-separated ('all' for every row)")
    sweep.add_argument("--seeds", default=None, help="seeds, comma-separated (0; with --homework: 42)")
    sweep.add_argument("--beta", type=float, default=None)
    _add_homework_options(sweep)
    sweep.add_argument("--out", required=True)
    sweep.add_argument("--overwrite", action="store_true",
                       help="retrain points already saved in --out with the same settings (default: reuse them)")
    sweep.set_defaults(func=_sweep, uses_gpu=True)

    bench = commands.add_parser("bench", help="generation, DPO and stage timings measured side by side")
    bench.add_argument("--profile", default="tiny")
    bench.add_argument("--prompts", type=int, default=24, help="prompts for the generation comparison (24)")
    bench.add_argument("--stance-seeds", type=int, default=0,
                       help="also N seeds of whole runs at ratio 1 and 0, today's path beside the earlier one (fp32, "
                            "every speed-up off): the stance figures side by side (about 8 minutes a seed for "
                            "smollm2-135m)")
    bench.add_argument("--out", required=True)
    bench.set_defaults(func=_bench, uses_gpu=True)

    bench_data = commands.add_parser("bench-data", help="data check and convert, streamed vs whole-file: rows/s and "
                                                        "peak memory, each in its own process")
    bench_data.add_argument("--rows", type=int, default=100_000, help="rows of the generated hh-rlhf-style file")
    bench_data.add_argument("--file", default=None, help="bench this file instead of a generated one")
    bench_data.add_argument("--out", required=True)
    bench_data.set_defaults(func=_bench_data)

    export = commands.add_parser("export", help="merge a run's LoRA adapter into a standalone model")
    export.add_argument("--run", required=True, help="a complete run folder")
    export.add_argument("--out", required=True, help="the model folder to write")
    export.add_argument("--push-to-hub", default=None, metavar="REPO", help="also upload it (token from HF_TOKEN)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace --out even if it holds something other than an earlier export of this run")
    export.set_defaults(func=_export, uses_gpu=True)

    gpu = commands.add_parser("gpu-check", help="check the GPU path on this machine's GPU: precision, attention "
                                                "kernel, QLoRA DPO in fp16 and bf16, peak memory, export (offline)")
    gpu.add_argument("--out", required=True, help="the folder for gpu_check.json and the check's run")
    gpu.add_argument("--profile", default="tiny-4bit", help="tiny-4bit (offline, a few minutes), or a GPU profile or "
                                                            "homework (hw6, hw7) where the hub is reachable")
    gpu.set_defaults(func=_gpu_check, uses_gpu=True)

    build = commands.add_parser("build-tiny", help="build (or find in the cache) the tiny offline model")
    build.set_defaults(func=_build_tiny)

    notebooks = commands.add_parser("notebooks", help="check or rewrite every notebook's badges and install cell")
    mode = notebooks.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a notebook is out of date")
    mode.add_argument("--write", action="store_true", help="rewrite the notebooks that are out of date")
    notebooks.set_defaults(func=_notebooks)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line and exit 2, with no traceback."""
    from helpers.notebook import quiet_logs, set_threads

    args = build_parser().parse_args(argv)
    quiet_logs()
    if os.environ.get("DPO_THREADS"):  # only then: `data check` never imports torch
        set_threads()
    from helpers.errors import UserError

    try:
        if getattr(args, "uses_gpu", False):  # before anything starts CUDA (`data check` never imports torch)
            from helpers.hardware import pin_one_gpu

            pin_one_gpu(echo=lambda line: print(line, file=sys.stderr))
        return args.func(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
