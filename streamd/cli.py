"""The `streamd` command line. The only module that prints."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from streamd import __version__
from streamd.config import (
    ANONYMIZATION_METHODS,
    DETECTOR_PROFILES,
    AnonymizerConfig,
    CameraConfig,
    FileSourceConfig,
    ReversibleConfig,
    load_config,
)
from streamd.cluster.lookup import add_cluster_lookup, cluster_endpoint
from streamd.errors import Interrupted, StreamdError
from streamd.progress import progress_display

if TYPE_CHECKING:
    from streamd.oneshot import OneShotResult
    from streamd.oneshot.settings import OneShotFlags

logger = logging.getLogger("streamd")

Handler = Callable[[argparse.Namespace], int]


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM stops a one-shot run like Ctrl-C: what was written is kept as incomplete."""

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_error(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- commands
def cmd_validate_config(args: argparse.Namespace) -> int:
    from streamd.config_checks import describe_problems, run_time_problems
    from streamd.reversible.checks import check_reversible_cameras

    config = load_config(args.file)
    check_reversible_cameras(config.cameras)
    problems = run_time_problems(config)
    if problems:
        text = args.file.read_text(encoding="utf-8")
        for line in describe_problems(problems, text, str(args.file)):
            print(f"streamd: error: {line}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok ({len(config.cameras)} camera{'s' if len(config.cameras) != 1 else ''}: "
          f"{', '.join(camera.id for camera in config.cameras)})")
    return 0


def _one_shot_flags(args: argparse.Namespace) -> OneShotFlags:
    from streamd.oneshot.settings import OneShotFlags

    return OneShotFlags(threshold=args.thresh, mask_scale=args.mask_scale, detect_every=args.detect_every,
                        crf=args.crf, preset=args.preset, audio=False if args.no_audio else None)


def _one_shot_camera(args: argparse.Namespace) -> CameraConfig:
    from streamd.oneshot.settings import apply_detection_flags

    if args.config is not None:
        config = load_config(args.config)
        camera = config.cameras[0]
    else:
        camera = CameraConfig(id="oneshot", source=FileSourceConfig(path=args.input))
    if args.method is not None:
        anonymizer = AnonymizerConfig.model_validate({**camera.anonymizer.model_dump(), "method": args.method})
        camera = camera.model_copy(update={"anonymizer": anonymizer})
    if getattr(args, "profile", None) is not None:
        camera = camera_with_profile(camera, args.profile)
    if args.recipient:
        reversible = camera.reversible or ReversibleConfig(recipients=args.recipient)
        reversible = reversible.model_copy(update={"recipients": list(args.recipient)})
        camera = camera.model_copy(update={"reversible": ReversibleConfig.model_validate(reversible.model_dump())})
    return apply_detection_flags(camera, _one_shot_flags(args))


def camera_with_profile(camera: CameraConfig, profile: str) -> CameraConfig:
    """`camera` with its detector's profile set (CenterFace only)."""
    if camera.detector.type != "centerface":
        raise StreamdError(f"--profile applies to the centerface detector, not {camera.detector.type}")
    detector = camera.detector.model_copy(update={"profile": profile})
    return camera.model_copy(update={"detector": type(camera.detector).model_validate(detector.model_dump())})


def cmd_anonymize(args: argparse.Namespace) -> int:
    from streamd.oneshot import anonymize_path, default_output, is_image_path
    from streamd.oneshot.planning import check_output
    from streamd.oneshot.settings import with_file_output

    output = args.output or default_output(args.input, restorable=bool(args.recipient))
    camera = _one_shot_camera(args)
    if args.cluster is not None:
        from streamd.cluster.commands import anonymize_archive

        args.output = output
        return anonymize_archive(args, camera, print, _print_error)
    is_video = args.input.is_file() and not is_image_path(args.input)
    if is_video:
        check_output(args.input, output, args.force)
        camera = with_file_output(camera, output, _one_shot_flags(args))
    with _sigterm_interrupts(), progress_display(None, "frame" if is_video else "image", "anonymizing") as progress:
        result = anonymize_path(args.input, output, camera, progress, recursive=args.recursive, force=args.force)
    return _report_one_shot(args.input, output, camera.anonymizer.method, result)


def _report_one_shot(input_path: Path, output: Path, method: str, result: OneShotResult) -> int:
    """What a one-shot run did and what it could not; its exit status."""
    if result.skipped_folders:
        names = ", ".join(folder.name for folder in result.skipped_folders[:5])
        more = f" and {len(result.skipped_folders) - 5} more" if len(result.skipped_folders) > 5 else ""
        print(f"streamd: {input_path}: {len(result.skipped_folders)} subfolder(s) not searched ({names}{more}); "
              "pass --recursive to include them", file=sys.stderr)
    for path, reason in result.failures.items():
        print(f"streamd: skipped {reason if reason.startswith(str(path)) else f'{path}: {reason}'}", file=sys.stderr)
    if result.kind != "video" or result.stats is None:
        print(f"{output}: {len(result.files_written)} images written, {result.faces} faces masked ({method})")
        return 1 if result.failures else 0
    snapshot = result.stats.snapshot()
    print(f"{output}: {snapshot['frames_out']} frames, {snapshot['faces_out']} faces masked ({method}), "
          f"{snapshot['fps']:.1f} fps")
    code = 0
    if snapshot["frames_masked"]:
        print(f"streamd: {snapshot['frames_masked']} frames failed processing and were blanked", file=sys.stderr)
        code = 1
    if result.frames_lost:
        announced = f" of the {result.frames_announced} its container announces" if result.frames_announced else ""
        print(f"streamd: {input_path}: {result.frames_lost} frames were lost: {snapshot['frames_in']} frames "
              f"decoded{announced} (the file is truncated or damaged); the output holds those that decoded",
              file=sys.stderr)
        code = 1
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    from streamd.demo import run_demo

    summary = run_demo(args.output, method=args.method, seconds=args.seconds)
    print(f"demo clip:      {summary.input_clip}")
    print(f"anonymized:     {summary.output_clip}")
    print(f"contact sheet:  {summary.contact_sheet}")
    print(f"frames:         {summary.frames_out} of {summary.frames_in}")
    print(f"faces:          {summary.truth_faces_covered} of {summary.truth_faces} ground-truth faces masked "
          f"({summary.faces_masked_on_prediction} on predicted boxes), {summary.tracks} tracks")
    print(f"speed:          {summary.fps:.1f} fps end to end, latency p50 {summary.latency_p50_ms:.0f} ms, "
          f"p95 {summary.latency_p95_ms:.0f} ms")
    print(f"summary:        {args.output / 'summary.json'}")
    return 0 if summary.truth_faces_covered == summary.truth_faces else 1


def cmd_run(args: argparse.Namespace) -> int:
    from streamd.service.logs import configure_logging
    from streamd.service.daemon import StreamService

    config = load_config(args.config)
    configure_logging(config.log_format, "DEBUG" if args.debug else config.log_level,
                      frozenset(camera.id for camera in config.cameras))
    if args.cluster is not None:
        from streamd.cluster.commands import run_fleet

        return run_fleet(args, config, _print_error)
    service = StreamService(config, config_path=args.config, camera_ids=args.camera)
    service.install_signal_handlers()
    return service.run()


def cmd_status(args: argparse.Namespace) -> int:
    from streamd.service.status import DEFAULT_BASE_URL, address_from_config, base_url, read_status

    if args.cluster:
        from streamd.cluster.commands import fleet_status

        return fleet_status(args.ray_address, print)
    address = args.url or (address_from_config(args.config) if args.config is not None else DEFAULT_BASE_URL)
    report = read_status(base_url(address))
    print(report.text)
    return 0 if report.healthy else 3


def cmd_tail(args: argparse.Namespace) -> int:
    from streamd.tail import format_stats, tail

    endpoint = cluster_endpoint(args) if args.cluster else args.endpoint
    tail(endpoint, duration_s=args.seconds, max_messages=args.count,
         on_stats=lambda stats: print(format_stats(stats), flush=True))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from streamd.bench import format_bench_table, run_bench

    report = run_bench(args.input, method=args.method, baseline=args.baseline, out_path=args.output,
                       config_path=args.config, work_dir=args.work_dir)
    print(format_bench_table(report))
    print(f"written to {args.output}")
    return 0


def cmd_eval_truth(args: argparse.Namespace) -> int:
    from streamd.truth.evaluate import evaluate_truth
    from streamd.truth.report import text_table
    from streamd.truth.runner import DEFAULT_FRAME_STEP

    if args.input is None:
        raise StreamdError("eval --truth needs the clip (or benchmark folder) to measure")
    outcome = evaluate_truth(
        args.input, args.truth, args.output, conditions_path=args.conditions, methods=args.method or ["blur"],
        profiles=args.profile or [None], baseline=args.baseline,
        frame_step=args.frame_step or DEFAULT_FRAME_STEP, min_visibility=args.min_visibility,
        progress=lambda line: print(f"streamd: {line}", file=sys.stderr),
        base_camera=load_config(args.config).cameras[0] if args.config is not None else None,
    )
    print(text_table(outcome.report))
    print(f"report: {outcome.files['markdown']}")
    return 0


def cmd_make_benchmark(args: argparse.Namespace) -> int:
    from streamd.truth.hard_clip import build_benchmark

    clips = build_benchmark(args.output, split=args.split, seconds=args.seconds, scenes=args.scene or None)
    for clip in clips:
        print(f"{clip.video}: {clip.frames} frames, {clip.instances} face instances, ground truth {clip.gt}")
    print(f"benchmark: {args.output / 'benchmark.json'} (streamd eval {args.output} --truth {args.output})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from streamd.evaluation import DEFAULT_METHODS, run_evaluation
    from streamd.evaluation.report import summary_table

    if args.truth is not None:
        return cmd_eval_truth(args)
    truth_only = [name for name, value in (("--profile", args.profile), ("--baseline", args.baseline),
                                           ("--config", args.config),
                                           ("--conditions", args.conditions)) if value]
    if truth_only:
        raise StreamdError(f"{truth_only[0]} applies to the ground-truth benchmark only (with --truth)")
    outcome = run_evaluation(
        args.input, args.method or list(DEFAULT_METHODS), args.output, key_hex=args.key, seed=args.seed,
        diversity_keys=args.keys, frame_step=args.frame_step or 12, max_frames=args.max_frames,
        progress_factory=lambda total: progress_display(total, "image", "evaluating"),
    )
    report = outcome.report
    print(summary_table(report))
    for where, reason in report["data"]["failed_inputs"].items():
        print(f"streamd: skipped {where}: {reason}", file=sys.stderr)
    for name, method in report["methods"].items():
        for image, reason in method["failed_images"].items():
            print(f"streamd: {name} failed on {image}: {reason}", file=sys.stderr)
    print(f"report: {outcome.files['markdown']}{' (partial results)' if report['partial'] else ''}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamd", description="Reversible face anonymization for camera streams.")
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the cameras of a config file")
    run.add_argument("config", type=Path)
    run.add_argument("--camera", action="append", help="run only this camera id (repeatable)")
    run.add_argument("--cluster", metavar="ADDRESS", help="run each camera as a Ray actor on the cluster at "
                     "auto, ray://HOST:PORT or HOST:PORT (needs streamd[cluster]; see docs/scaling.md)")
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser("status", help="show each camera of a running service (from its metrics)")
    status.add_argument("--url", "--metrics", dest="url", metavar="URL",
                        help="the service's metrics address, e.g. http://127.0.0.1:9108 (default: from --config, "
                        "else http://127.0.0.1:9108)")
    status.add_argument("--config", type=Path, help="read the metrics address from this config file (only its "
                        "metrics section has to be valid)")
    add_cluster_lookup(status, "ask the camera actors of a Ray cluster instead")
    status.set_defaults(handler=cmd_status)

    validate = commands.add_parser("validate-config", help="check a config file and what it names (files, folders, "
                                   "addresses); point at each bad line")
    validate.add_argument("file", type=Path)
    validate.set_defaults(handler=cmd_validate_config)

    anonymize = commands.add_parser("anonymize", help="anonymize a video, an image or a folder of images")
    anonymize.add_argument("input", type=Path, help="a video, an image, or a folder of images")
    anonymize.add_argument("-o", "--output", type=Path,
                           help="where to write (default: NAME.anonymized.EXT beside the input)")
    anonymize.add_argument("--force", action="store_true", help="overwrite an existing output")
    anonymize.add_argument("--recursive", action="store_true",
                           help="a folder: include the images of its subfolders (the output mirrors them)")
    anonymize.add_argument("--method", choices=ANONYMIZATION_METHODS)
    anonymize.add_argument("--thresh", type=float, metavar="SCORE",
                           help="detection threshold, 0..1 (default 0.25; lower misses fewer faces)")
    anonymize.add_argument("--mask-scale", type=float, metavar="FACTOR",
                           help="scale each face box by this before masking, 1..3 (default 1.4)")
    anonymize.add_argument("--detect-every", type=int, metavar="N",
                           help="run the detector every N frames, following faces in between (default 1)")
    anonymize.add_argument("--crf", type=int, metavar="CRF", help="x264 quality, 0..51, lower is better (default 20)")
    anonymize.add_argument("--preset", choices=["ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                                                "slow"], help="x264 preset (default veryfast)")
    anonymize.add_argument("--no-audio", action="store_true", help="drop the audio (copied unchanged by default)")
    anonymize.add_argument("--profile", choices=DETECTOR_PROFILES,
                           help="detector profile (default balanced; see the README's profile table)")
    anonymize.add_argument("--config", type=Path, help="take detector, tracker and anonymizer settings from "
                           "the first camera of this file")
    anonymize.add_argument("--recipient", action="append", metavar="PUBLIC_KEY",
                           help="restore public key (restore.pub or credential:NAME) to make the output "
                           "restorable (repeatable; output must be .mkv)")
    anonymize.add_argument("--cluster", metavar="ADDRESS", help="anonymize the folder INPUT as Ray tasks: auto, "
                           "local or ray://HOST:PORT (needs streamd[cluster]; see docs/scaling.md)")
    anonymize.add_argument("--segment-frames", type=int, default=1500, metavar="N",
                           help="with --cluster: cut videos at the first key frame after every N frames")
    anonymize.set_defaults(handler=cmd_anonymize)

    demo = commands.add_parser("demo", help="build a demo clip from bundled faces and anonymize it")
    demo.add_argument("-o", "--output", type=Path, default=Path("demo-output"))
    demo.add_argument("--method", choices=ANONYMIZATION_METHODS, default="blur")
    demo.add_argument("--seconds", type=float, default=4.0, help="length of the demo clip")
    demo.set_defaults(handler=cmd_demo)

    tail = commands.add_parser("tail", help="subscribe to a stream and print per-second stats")
    tail.add_argument("endpoint")
    tail.add_argument("--seconds", type=float, help="stop after this long")
    tail.add_argument("--count", type=int, help="stop after this many messages")
    add_cluster_lookup(tail, "ENDPOINT is a camera id of a fleet on a Ray cluster")
    tail.set_defaults(handler=cmd_tail)

    from streamd.reversible.commands import add_reversible_commands

    add_reversible_commands(commands)

    bench = commands.add_parser("bench", help="measure end-to-end speed and per-stage latency")
    bench.add_argument("input", type=Path, nargs="?", help="video to run (default: the demo clip)")
    bench.add_argument("--method", choices=ANONYMIZATION_METHODS, default="blur")
    bench.add_argument("--baseline", choices=["deface"], help="also run this tool on the same clip")
    bench.add_argument("--config", type=Path, help="take settings from the first camera of this file")
    bench.add_argument("-o", "--output", type=Path, default=Path("bench.json"))
    bench.add_argument("--work-dir", type=Path, default=Path("bench-output"))
    bench.set_defaults(handler=cmd_bench)

    evaluate = commands.add_parser("eval", help="measure protection, restore fidelity and utility per method")
    evaluate.add_argument("input", type=Path, nargs="?",
                          help="folder of face photos, one photo, or a clip (default: the bundled sample photos)")
    evaluate.add_argument("--method", action="append", metavar="METHOD",
                          help="blur, mosaic, solid, blur+sealed, mosaic+sealed, solid+sealed or sdn (repeatable; "
                               "default: blur, mosaic, solid, blur+sealed)")
    evaluate.add_argument("--key", metavar="HEX", help="track key (64 hex digits) to anonymize with; "
                          "default: keys derived from --seed")
    evaluate.add_argument("--seed", type=int, default=0, help="seed for the per-face keys")
    evaluate.add_argument("--keys", type=int, default=3, help="keys per face for the diversity measurement")
    evaluate.add_argument("--frame-step", type=int, help="clip input: take every n-th frame (default 12; "
                          "with --truth: 5)")
    evaluate.add_argument("--max-frames", type=int, default=8, help="clip input: at most this many frames")
    evaluate.add_argument("--config", type=Path, help="with --truth: take detector, tracker and anonymizer "
                          "settings from the first camera of this file")
    evaluate.add_argument("--truth", type=Path, metavar="GT",
                          help="measure missed faces against MOTChallenge ground truth (gt.txt) instead; for a "
                          "benchmark folder made by make-benchmark, give the folder as input and as GT")
    evaluate.add_argument("--conditions", type=Path, metavar="FILE",
                          help="with --truth: condition tags per instance (default: conditions.csv beside GT)")
    evaluate.add_argument("--profile", action="append", choices=["fast", "balanced", "thorough"],
                          help="with --truth: detector profile to run (repeatable; default: the configured default)")
    evaluate.add_argument("--baseline", choices=["deface"], help="with --truth: also run this tool on the same clips")
    evaluate.add_argument("--min-visibility", type=float, default=0.5,
                          help="with --truth: score instances at least this visible (0..1)")
    evaluate.add_argument("-o", "--output", type=Path, default=Path("eval-report"), help="report folder")
    evaluate.set_defaults(handler=cmd_eval)

    benchmark = commands.add_parser("make-benchmark", help="write hard clips with ground truth for eval --truth")
    benchmark.add_argument("output", type=Path, help="benchmark folder (clips, <clip>/gt/gt.txt, benchmark.json)")
    benchmark.add_argument("--split", choices=["tune", "heldout"], default="tune",
                           help="tune: the faces thresholds may be tuned on; heldout: only other faces")
    benchmark.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    benchmark.add_argument("--scene", action="append", choices=["sizes", "dark", "occlusion", "crowd", "phone"],
                           help="make only this scene (repeatable; default: all)")
    benchmark.set_defaults(handler=cmd_make_benchmark)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        code = args.handler(args)
        sys.stdout.flush()
        return code
    except StreamdError as exc:
        if args.debug:
            raise
        print(f"streamd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return _reader_went_away()
    except KeyboardInterrupt as exc:
        signal_name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        print(f"streamd: interrupted ({signal_name})", file=sys.stderr)
        return 128 + signal.Signals[signal_name].value


def _reader_went_away() -> int:
    """stdout's reader closed the pipe (`streamd restore --list | head`): end quietly, as `cat` does.

    stdout is pointed at /dev/null so that the interpreter's last flush does not fail again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE.value


if __name__ == "__main__":
    sys.exit(main())
