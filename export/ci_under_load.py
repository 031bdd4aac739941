"""Run `bash .ci/run` several times in a row on fresh clones while a CPU-heavy job runs beside it.

The suite must not depend on an idle machine: no timing assert may fail because another job holds
the cores. This script clones the repository's committed HEAD into a new folder for every run (as CI
does), keeps a load job going for the whole measurement (by default `streamd anonymize` of a 1280x720
clip in a loop, which keeps both cores of a 2-core machine busy: decode, detect, track, blur and
encode), and records for every run its exit status, its duration, the load average around it and the
last lines of its output. It stops at the first failing run unless `--keep-going`.

    python -m export.ci_under_load [--runs 5] [--work-dir /tmp/ci-under-load]

Writes docs/results/ci-under-load.json and .md and prints a line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_JSON = REPO / "docs" / "results" / "ci-under-load.json"
RESULTS_MD = REPO / "docs" / "results" / "ci-under-load.md"
LOAD_CLIP_SECONDS = 20
TAIL_LINES = 15


@dataclass
class CiRun:
    run: int
    exit_status: int
    seconds: float
    load_average_before: float
    load_average_after: float
    summary_line: str
    load_job_passes: int
    output_tail: list[str]


def _load_average() -> float:
    return os.getloadavg()[0]


def _build_load_clip(work_dir: Path) -> Path:
    from streamd.demo_clip import build_demo_clip

    clip = work_dir / "load-clip.mp4"
    if not clip.is_file():
        build_demo_clip(clip, seconds=LOAD_CLIP_SECONDS)
    return clip


def _start_load_job(clip: Path, work_dir: Path) -> subprocess.Popen:
    """A shell loop anonymizing `clip` again and again; each pass appends a line to `load-passes.log`."""
    output = work_dir / "load-output.mp4"
    passes = work_dir / "load-passes.log"
    passes.write_text("")
    command = (
        f"while true; do {sys.executable} -m streamd anonymize {clip} -o {output} --force "
        f">/dev/null 2>&1 && echo pass >> {passes}; done"
    )
    return subprocess.Popen(["bash", "-c", command], start_new_session=True)


def _default_interrupts() -> None:
    """SIGINT and SIGQUIT as in a foreground CI job (a shell starts background jobs with them ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop(job: subprocess.Popen) -> None:
    """End `job` and everything it started (it leads its own session)."""
    try:
        os.killpg(job.pid, 15)
    except ProcessLookupError:
        return
    try:
        job.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, 9)
        job.wait()


def _load_passes(work_dir: Path) -> int:
    log = work_dir / "load-passes.log"
    return len(log.read_text().split()) if log.is_file() else 0


def _fresh_clone(work_dir: Path, run: int, commit: str) -> Path:
    """A new clone of the repository at `commit` (every run tests the same commit, whatever lands meanwhile)."""
    target = work_dir / f"clone-{run}"
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "-q", commit], check=True)
    return target


def _summary_line(lines: list[str]) -> str:
    for line in reversed(lines):
        if " passed" in line or " failed" in line or " error" in line:
            return line.strip()
    return lines[-1].strip() if lines else ""


def run_ci(clone: Path, run: int, work_dir: Path) -> CiRun:
    load_before = _load_average()
    passes_before = _load_passes(work_dir)
    log_path = work_dir / f"ci-run-{run}.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        ci = subprocess.Popen(["bash", ".ci/run"], cwd=clone, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True, preexec_fn=_default_interrupts)
        try:
            returncode = ci.wait()
        except BaseException:  # interrupted: take the whole CI run (pytest and its servers) down with us
            _stop(ci)
            raise
    seconds = time.monotonic() - started
    lines = log_path.read_text(errors="replace").splitlines()
    return CiRun(run, returncode, round(seconds, 1), round(load_before, 2), round(_load_average(), 2),
                 _summary_line(lines), _load_passes(work_dir) - passes_before, lines[-TAIL_LINES:])


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def write_results(runs: list[CiRun], commit: str, load_description: str) -> None:
    passed = sum(1 for r in runs if r.exit_status == 0)
    document = {
        "commit": commit,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "load_job": load_description,
        "runs": [asdict(r) for r in runs],
        "passed_in_a_row": passed if passed == len(runs) else None,
    }
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(document, indent=2) + "\n")
    rows = [
        f"| {r.run} | {'pass' if r.exit_status == 0 else f'FAIL ({r.exit_status})'} | {r.seconds / 60:.1f} min "
        f"| {r.load_average_before:.1f} / {r.load_average_after:.1f} | {r.load_job_passes} | {r.summary_line} |"
        for r in runs
    ]
    RESULTS_MD.write_text(
        "# CI under load: measured\n\n"
        f"`bash .ci/run` on fresh clones of commit {commit}, one after another, while {load_description} "
        f"ran the whole time ({document['machine']}). Reproduce: `python -m export.ci_under_load`.\n\n"
        "| run | result | duration | load average before / after | load job passes | pytest summary |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/ci-under-load"))
    parser.add_argument("--keep-going", action="store_true", help="run them all even after a failure")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    commit = _commit()
    clip = _build_load_clip(args.work_dir)
    load_description = (f"`streamd anonymize` of a {LOAD_CLIP_SECONDS} s 1280x720 demo clip in a loop "
                        "(balanced profile, both cores)")
    job = _start_load_job(clip, args.work_dir)
    runs: list[CiRun] = []
    try:
        for run in range(1, args.runs + 1):
            clone = _fresh_clone(args.work_dir, run, commit)
            print(f"run {run}/{args.runs}: bash .ci/run in {clone} (load average {_load_average():.1f})", flush=True)
            result = run_ci(clone, run, args.work_dir)
            runs.append(result)
            write_results(runs, commit, load_description)
            print(f"run {run}/{args.runs}: exit {result.exit_status} after {result.seconds / 60:.1f} min, "
                  f"{result.summary_line}", flush=True)
            shutil.rmtree(clone, ignore_errors=True)
            if result.exit_status != 0 and not args.keep_going:
                break
    finally:
        _stop(job)
    passed = sum(1 for r in runs if r.exit_status == 0)
    print(f"{passed} of {len(runs)} runs passed; {RESULTS_MD}", flush=True)
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
