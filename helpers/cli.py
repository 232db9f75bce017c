"""The command line: `python -m helpers data check|convert`, `run`, `sweep`, `bench`, `bench-data`, `export`,
`build-tiny`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helpers.data_rows import Skipped
    from helpers.runs import RunConfig


def _data_check(args: argparse.Namespace) -> int:
    from helpers import data

    report = data.check_file(Path(args.path), args.format, skip_bad_rows=args.skip_bad_rows, progress=True)
    print("\n".join(report.lines()))
    return 0


def _data_convert(args: argparse.Namespace) -> int:
    from helpers import data

    report = data.convert_file(Path(args.path), args.format, args.out, skip_bad_rows=args.skip_bad_rows,
                               progress=True)
    print("\n".join(report.lines()))
    return 0


def _run(args: argparse.Namespace) -> int:
    from helpers.runs import RunConfig, check_resume, check_run_request, metrics_table

    config = RunConfig(profile=args.profile, support_ratio=args.support_ratio, data_size=args.data_size,
                       num_epoch=args.num_epoch, beta=args.beta, learning_rate=args.learning_rate,
                       spread=args.spread, data=args.data, eval_data=args.eval_data,
                       test_prompts=args.test_prompts, seed=args.seed, model=args.model,
                       skip_bad_rows=args.skip_bad_rows)
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
    print(metrics_table(metrics).round(3).to_string())
    print(f"total {metrics['timings']['total']:.1f} s; results in {args.out}")
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
    from helpers.sweep import parse_numbers, run_sweep

    sizes = [None if s in ("all", "") else int(s) for s in args.data_sizes.split(",")]
    table = run_sweep(args.profile, parse_numbers(args.ratios), Path(args.out), parse_numbers(args.num_epochs),
                      sizes, parse_numbers(args.seeds, int), beta=args.beta, overwrite=args.overwrite)
    plot_sweep(table).savefig(Path(args.out) / "sweep.png", dpi=120)
    columns = ["support_ratio", "num_epoch", "data_size", "seed", "reused", "sft_support_rate", "dpo_support_rate",
               "dpo_generated_support_rate", "dpo_repetition", "dpo_seconds"]
    print(table[[c for c in columns if c in table]].round(3).to_string(index=False))
    print(f"results in {args.out}/sweep.json and {args.out}/sweep.png")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from helpers.bench import bench_table, run_bench

    report = run_bench(args.profile, Path(args.out), n_prompts=args.prompts)
    print(bench_table(report).to_string())
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


def _build_tiny(args: argparse.Namespace) -> int:
    from helpers.tiny_model import tiny_model_path

    path = tiny_model_path()
    print((path / "build.json").read_text(encoding="utf-8").strip())
    print(f"tiny model at {path}")
    return 0


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"support ratio must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"support ratio must be from 0 to 1, got {text}")
    return value


SKIP_HELP = "leave invalid rows out and report them, instead of refusing the file"


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data_parser = commands.add_parser("data", help="check or convert a preference data file")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser("check", help="detect the format and count the valid pairs")
    check.add_argument("path")
    check.add_argument("--format", default="auto", help="a format name, or auto to detect it from the fields")
    check.add_argument("--skip-bad-rows", action="store_true", help=SKIP_HELP)
    check.set_defaults(func=_data_check)
    convert = data_commands.add_parser("convert", help="write TRL preference records (conversational; trl-standard "
                                                       "input stays standard)")
    convert.add_argument("path")
    convert.add_argument("--format", default="auto")
    convert.add_argument("--out", required=True, help="OUT.jsonl, OUT.parquet, or OUT/ (a save_to_disk folder)")
    convert.add_argument("--skip-bad-rows", action="store_true", help=SKIP_HELP + "; listed in skipped_rows.jsonl "
                                                                                   "beside --out")
    convert.set_defaults(func=_data_convert)

    run = commands.add_parser("run", help="base -> SFT -> DPO, each stage measured; writes DIR/metrics.json")
    run.add_argument("--profile", default="auto", help="tiny, qwen2.5-0.5b, breeze-7b, ... (auto: by hardware)")
    run.add_argument("--support-ratio", type=_ratio, required=True, help="share of pairs preferring support")
    run.add_argument("--data-size", type=int, default=None, help="how many labelled rows to train on (all)")
    run.add_argument("--num-epoch", type=float, default=3, help="DPO epochs (3)")
    run.add_argument("--beta", type=float, default=None, help="DPO beta (the profile's, 0.1)")
    run.add_argument("--learning-rate", type=float, default=None, help="DPO learning rate (the profile's)")
    run.add_argument("--spread", action="store_true", help="spread support-preferred rows instead of a prefix")
    run.add_argument("--data", default=None, help="labelled rows, homework schema (bundled)")
    run.add_argument("--eval-data", default=None, help="held-out rows for measurement (bundled)")
    run.add_argument("--test-prompts", default=None, help="prompts to answer (bundled)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--model", default=None, help="a local model folder or hub id instead of the profile's")
    run.add_argument("--out", required=True, help="the run folder to write")
    run.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its checkpoint")
    run.add_argument("--skip-bad-rows", action="store_true", help=SKIP_HELP + " of the data files; listed in "
                                                                               "DIR/skipped_rows.jsonl")
    run.set_defaults(func=_run)

    sweep = commands.add_parser("sweep", help="one DPO run per knob setting, SFT trained once; sweep.json + sweep.png")
    sweep.add_argument("--profile", default="auto")
    sweep.add_argument("--ratios", default="0,0.25,0.5,0.75,1", help="support ratios, comma-separated")
    sweep.add_argument("--num-epochs", default="3", help="DPO epochs, comma-separated")
    sweep.add_argument("--data-sizes", default="all", help="pair counts, comma-separated ('all' for every row)")
    sweep.add_argument("--seeds", default="0", help="seeds, comma-separated")
    sweep.add_argument("--beta", type=float, default=None)
    sweep.add_argument("--out", required=True)
    sweep.add_argument("--overwrite", action="store_true",
                       help="retrain points already saved in --out with the same settings (default: reuse them)")
    sweep.set_defaults(func=_sweep)

    bench = commands.add_parser("bench", help="generation, DPO and stage timings measured side by side")
    bench.add_argument("--profile", default="tiny")
    bench.add_argument("--prompts", type=int, default=24, help="prompts for the generation comparison (24)")
    bench.add_argument("--out", required=True)
    bench.set_defaults(func=_bench)

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
    export.set_defaults(func=_export)

    build = commands.add_parser("build-tiny", help="build (or find in the cache) the tiny offline model")
    build.set_defaults(func=_build_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line and exit 2, with no traceback."""
    from helpers.notebook import quiet_logs

    args = build_parser().parse_args(argv)
    quiet_logs()
    from helpers.errors import UserError

    try:
        return args.func(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
