"""Archive mode's overhead against plain local runs of the same files, on this machine.

Writes footage (demo-clip faces, 640x360, 25 fps, a key frame every 2 s), then runs, back to back and
alternating, `streamd anonymize FILE -o OUT` once per file (the plain local run) and
`streamd anonymize FOLDER -o OUT --cluster local` (a one-node Ray started by the command, with as many
CPUs as the machine has). Both are timed end to end as a user would see them, Ray's start included,
in wall time and in CPU time of the whole process tree (on a shared machine the wall time of a run
with more processes gets a larger share of the CPUs; the CPU time does not).
Checks that the archive outputs have the frames and timestamps of the local ones, prints a table and
writes docs/results/cluster.json (with the load average before and after each run, since the
machine may be shared).

    python -m export.cluster_overhead --seconds 12 --files 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from streamd.demo_clip import write_keyframed_clip

WIDTH, HEIGHT, FPS, GOP = 640, 360, 25, 50


def write_footage(path: Path, frames: int) -> None:
    write_keyframed_clip(path, frames, (WIDTH, HEIGHT), FPS, GOP)


def frame_times(path: Path) -> list[tuple[int, float]]:
    with av.open(str(path)) as container:
        return [(frame.pts, float(frame.time)) for frame in container.decode(video=0)]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) of every process now."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of `command` and every process under it (Ray's included), sampled
    every 0.2 s from /proc (a process's last 0.2 s before it ends can be missed)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cpu_by_pid: dict[int, float] = {}
    tree = {process.pid}
    while process.poll() is None:
        table = _process_table()
        for pid, (parent, _) in sorted(table.items()):
            if parent in tree:
                tree.add(pid)
        for pid in tree & table.keys():
            cpu_by_pid[pid] = max(cpu_by_pid.get(pid, 0.0), table[pid][1])
        time.sleep(0.2)
    wall = time.perf_counter() - started
    stderr = process.stderr.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    return wall, sum(cpu_by_pid.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each file")
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="local/archive pairs, alternating")
    parser.add_argument("--segment-frames", type=int, default=150)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/results/cluster.json"))
    args = parser.parse_args()
    streamd = [sys.executable, "-m", "streamd.cli", "anonymize"]
    work = Path(tempfile.mkdtemp(prefix="cluster-overhead-"))
    try:
        footage = work / "footage"
        footage.mkdir()
        frames = int(args.seconds * FPS)
        files = [footage / f"camera-{number}.mp4" for number in range(args.files)]
        for path in files:
            write_footage(path, frames)
        runs = []
        for round_number in range(args.rounds):
            for mode in ("local", "archive"):
                out = work / f"{mode}-{round_number}"
                out.mkdir()
                load_before = os.getloadavg()[0]
                if mode == "local":
                    measured = [timed(streamd + [str(path), "-o", str(out / path.name)]) for path in files]
                    wall, cpu = sum(m[0] for m in measured), sum(m[1] for m in measured)
                else:
                    wall, cpu = timed(streamd + [str(footage), "-o", str(out), "--cluster", "local",
                                                 "--segment-frames", str(args.segment_frames)])
                runs.append({"mode": mode, "round": round_number, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                             "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)})
                print(f"round {round_number} {mode:8s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  (load "
                      f"{load_before:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
        for path in files:
            assert frame_times(work / "archive-0" / path.name) == frame_times(work / "local-0" / path.name), path
        local = [run["wall_s"] for run in runs if run["mode"] == "local"]
        archive = [run["wall_s"] for run in runs if run["mode"] == "archive"]
        pairs = [a / l - 1 for l, a in zip(local, archive)]
        local_cpu = sum(run["cpu_s"] for run in runs if run["mode"] == "local")
        archive_cpu = sum(run["cpu_s"] for run in runs if run["mode"] == "archive")
        result = {
            "what": "archive mode (--cluster local) against plain local runs of the same files, wall time",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "note": "shared with other work while measured; see load averages per run"},
            "footage": {"files": args.files, "frames_per_file": frames, "size": f"{WIDTH}x{HEIGHT}", "fps": FPS,
                        "keyframe_interval_frames": GOP, "segment_frames": args.segment_frames},
            "runs": runs,
            "overhead_per_round": [round(value, 3) for value in pairs],
            "overhead_of_totals": round(sum(archive) / sum(local) - 1, 3),
            "cpu_overhead_of_totals": round(archive_cpu / local_cpu - 1, 3),
            "outputs_identical_frames_and_timestamps": True,
            "command": "python -m export.cluster_overhead " + " ".join(sys.argv[1:]),
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(args.output.read_text()) if args.output.exists() else {}
        previous["archive_overhead"] = result
        args.output.write_text(json.dumps(previous, indent=2) + "\n")
        print(f"overhead of archive mode: wall {result['overhead_of_totals']:+.1%} over {args.rounds} round(s) "
              f"(per round {', '.join(f'{value:+.1%}' for value in pairs)}), CPU "
              f"{result['cpu_overhead_of_totals']:+.1%}; written to {args.output}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
