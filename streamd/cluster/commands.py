"""The `--cluster` forms of the CLI's commands. `streamd.cli` calls these and passes `say` to print with."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from streamd.config import CameraConfig

Say = Callable[[str], None]


def _progress_display(say_error: Say):
    """A tqdm bar of the job's frames on a terminal, else a line every 5 s; (update, close)."""
    from streamd.cluster.progress import format_progress

    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, unit="frame", desc="anonymizing", file=sys.stderr, leave=False)

        def update_bar(progress) -> None:
            bar.total = progress.frames_total
            bar.n = min(progress.frames_done, progress.frames_total)
            bar.set_postfix_str(f"files {progress.files_done + progress.files_skipped + progress.files_failed}"
                                f"/{progress.files_total}, {progress.files_failed} failed", refresh=False)
            bar.refresh()

        return update_bar, bar.close
    last_line = {"at": 0.0}

    def print_line(progress) -> None:
        now = time.monotonic()
        if now - last_line["at"] >= 5.0:
            say_error(f"streamd: {format_progress(progress)}")
            last_line["at"] = now

    return print_line, lambda: None


def anonymize_archive(args: argparse.Namespace, camera: CameraConfig, say: Say, say_error: Say) -> int:
    """Anonymize every file of the folder `args.input` into `args.output` on the cluster; 1 if any failed."""
    from streamd.cluster.archive import ArchiveJob, ArchiveOptions
    from streamd.cluster.ray_runtime import ClusterError, connect
    from streamd.cluster.resources import task_resources

    if args.segment_frames < 1:
        raise ClusterError(f"--segment-frames must be at least 1, not {args.segment_frames}")
    ray = connect(args.cluster)
    resources = task_resources(camera)
    options = ArchiveOptions(
        segment_frames=args.segment_frames, task_cpus=resources["num_cpus"], task_gpus=resources["num_gpus"])
    on_progress, close_progress = _progress_display(say_error)
    try:
        report = ArchiveJob(ray, args.input, args.output, camera, options, on_progress).run()
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"the Ray cluster failed under the job (rerun the same command to resume): {exc}") from None
    finally:
        close_progress()
    for name, reason in sorted(report.failed.items()):
        say_error(f"streamd: failed {name}: {reason}")
    say(f"{args.output}: {len(report.written)} written, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed; {report.frames} frames, {report.faces} faces masked "
        f"({camera.anonymizer.method}), {report.frames / report.wall_s if report.wall_s else 0:.1f} fps, "
        f"{report.wall_s:.1f} s")
    return 1 if report.failed else 0


def run_fleet(args: argparse.Namespace, config, say_error: Say) -> int:
    """`streamd run CONFIG --cluster ADDRESS`: the config's cameras as actors until SIGTERM/SIGINT."""
    from streamd.cluster.fleet import FleetService
    from streamd.cluster.ray_runtime import ClusterError, connect

    ray = connect(args.cluster)
    fleet = FleetService(ray, config, config_path=args.config, camera_ids=args.camera)
    fleet.install_signal_handlers()
    say_error(f"streamd: running {fleet.camera_count} cameras on the Ray cluster at {args.cluster}")
    try:
        return fleet.run()
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"the Ray cluster failed under the fleet: {exc}") from None


def resolve_camera_endpoint(address: str, camera_id: str) -> str:
    """`tail`/`record --cluster CAMERA`: the address the camera's publisher bound on its node."""
    from streamd.cluster.ray_runtime import connect
    from streamd.cluster.registry import resolve_endpoint

    return resolve_endpoint(connect(address), camera_id)


def fleet_status(address: str, say: Say) -> int:
    """`streamd status --cluster`: each camera's state from its actor, and where it runs; 3 if any is not up."""
    from streamd.cluster.fleet_status import collect_fleet_status, format_fleet_status

    rows = collect_fleet_status(address)
    say(format_fleet_status(rows))
    return 0 if rows and all(row.state in ("up", "finished") for row in rows) else 3
