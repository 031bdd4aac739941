"""How long a camera takes to publish again after its node is lost, on a 2-node local Ray cluster.

Starts a head node (2 CPUs) and a worker node (1 CPU) with the fast node-death detection that
docs/scaling.md recommends, runs a fleet of two cameras (a looping demo clip, faces masked solid
black, published over ZeroMQ), subscribes to the camera on the worker node, then kills that node and
the camera's process at once. Reported: seconds from the kill until the camera was placed again and
until its first frame from the new node arrived, and how many received frames showed a face centre
that was not black. Repeats `--trials` times and adds the result to docs/results/cluster.json.

    python -m export.cluster_node_loss --trials 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray
import zmq
from ray.cluster_utils import Cluster

from streamd.cluster.fleet import FleetService
from streamd.cluster.ray_runtime import NAMESPACE, ClusterError
from streamd.cluster.registry import camera_actor
from streamd.config import StreamdConfig
from streamd.demo_clip import write_keyframed_clip
from streamd.protocol import FRAME_TOPIC_PREFIX, decode_frame_message

WIDTH, HEIGHT, FPS = 640, 360, 10
FAST_NODE_DEATH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                   "health_check_initial_delay_ms": 0}


def write_clip(path: Path, frames: int) -> list[np.ndarray]:
    return write_keyframed_clip(path, frames, (WIDTH, HEIGHT), FPS, gop=10)


def face_centres_masked(bgr: np.ndarray, boxes: np.ndarray) -> bool:
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        centre = bgr[int(y0 + h / 4):int(y1 - h / 4), int(x0 + w / 4):int(x1 - w / 4)]
        if centre.size and (centre.max(axis=2) < 40).mean() < 0.5:
            return False
    return True


def placement(camera_id: str) -> dict | None:
    try:
        return ray.get(camera_actor(ray, camera_id).placement.remote(), timeout=1)
    except (ClusterError, ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
        return None  # restarting or not yet created: no answer this round


def trial(clip: Path, truth: list[np.ndarray]) -> dict:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 80 << 20, "include_dashboard": False, "_system_config": FAST_NODE_DEATH})
    worker = cluster.add_node(num_cpus=1, object_store_memory=80 << 20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    cameras = [{"id": name, "source": {"type": "file", "path": str(clip), "loop": True, "realtime": True},
                "detector": {"type": "centerface", "input_width": WIDTH, "input_height": HEIGHT, "intra_op_threads": 1},
                "anonymizer": {"method": "solid"}, "outputs": {"zmq": {"endpoint": "tcp://127.0.0.1:*"}},
                "resources": {"num_cpus": 1}} for name in ("gate", "yard")]
    config = StreamdConfig.model_validate({"cameras": cameras, "metrics": {"enabled": False},
                                           "service": {"status_interval_s": 0.5}})
    fleet = FleetService(ray, config)
    runner = threading.Thread(target=fleet.run, daemon=True)
    runner.start()
    frames: list[tuple[float, str, bool]] = []
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 120
        while True:
            found = {name: placement(name) for name in ("gate", "yard")}
            if all(entry and entry["endpoint"] for entry in found.values()):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the fleet did not start within 120 s")
            time.sleep(0.2)
        victim = next(name for name, entry in found.items() if entry["node_id"] == worker.node_id)

        def subscribe() -> None:
            context = zmq.Context()
            socket, endpoint, quiet_since = None, None, time.monotonic()
            while not stop.is_set():
                if socket is None or time.monotonic() - quiet_since > 1.0:
                    entry = placement(victim)
                    if entry and entry["endpoint"] and entry["endpoint"] != endpoint:
                        if socket is not None:
                            socket.close(linger=0)
                        endpoint = entry["endpoint"]
                        socket = context.socket(zmq.SUB)
                        socket.setsockopt(zmq.SUBSCRIBE, FRAME_TOPIC_PREFIX)
                        socket.connect(endpoint)
                    quiet_since = time.monotonic()
                if socket is None or not socket.poll(100):
                    continue
                header, bgr, _ = decode_frame_message(socket.recv_multipart())
                quiet_since = time.monotonic()
                masked = face_centres_masked(bgr, truth[header["frame_index"] % len(truth)])
                frames.append((time.monotonic(), endpoint, masked))
            if socket is not None:
                socket.close(linger=0)
            context.term()

        subscriber = threading.Thread(target=subscribe, daemon=True)
        subscriber.start()
        while len(frames) < 20:
            time.sleep(0.1)
        old_endpoint = frames[-1][1]
        lost_at = time.monotonic()
        cluster.remove_node(worker, allow_graceful=False)
        os.kill(found[victim]["pid"], signal.SIGKILL)
        placed_s = None
        while placed_s is None or not any(endpoint != old_endpoint and at > lost_at for at, endpoint, _ in frames):
            entry = placement(victim)
            if placed_s is None and entry and entry["node_id"] != worker.node_id and entry["endpoint"]:
                placed_s = time.monotonic() - lost_at
            if time.monotonic() - lost_at > 120:
                raise SystemExit("the camera did not come back within 120 s")
            time.sleep(0.05)
        first_new = min(at for at, endpoint, _ in frames if endpoint != old_endpoint and at > lost_at)
        time.sleep(2)
        return {"placed_again_s": round(placed_s, 2), "publishing_again_s": round(first_new - lost_at, 2),
                "frames_received": len(frames), "frames_with_a_face_unmasked": sum(not m for _, _, m in frames)}
    finally:
        stop.set()
        fleet.request_stop()
        runner.join(timeout=60)
        ray.shutdown()
        cluster.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/results/cluster.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        truth = write_clip(clip, 40)
        trials = []
        for number in range(args.trials):
            result = trial(clip, truth)
            trials.append(result)
            print(f"trial {number}: placed again {result['placed_again_s']} s, publishing again "
                  f"{result['publishing_again_s']} s, {result['frames_received']} frames, "
                  f"{result['frames_with_a_face_unmasked']} with a face unmasked", flush=True)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    previous["node_loss"] = {
        "what": "2-node local Ray cluster (head 2 CPUs, worker 1 CPU), node health checks every 0.5 s, 3 misses; "
                "the worker node and the camera's process killed at once",
        "load_average_after": round(os.getloadavg()[0], 2),
        "trials": trials,
        "publishing_again_s_max": max(trial["publishing_again_s"] for trial in trials),
        "command": "python -m export.cluster_node_loss " + " ".join(sys.argv[1:]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
