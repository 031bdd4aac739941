"""`--cluster` on commands that subscribe to a camera (`tail`, `record`): the camera id is looked up in
the fleet's named actors. Ray is imported only when the lookup runs."""

from __future__ import annotations

import argparse
import sys


def add_cluster_lookup(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--cluster", action="store_true", help=f"{what} (needs streamd[cluster])")
    command.add_argument("--ray-address", default="auto", metavar="ADDRESS",
                         help="with --cluster: auto (default), ray://HOST:PORT or HOST:PORT")


def cluster_endpoint(args: argparse.Namespace) -> str:
    """With --cluster, ENDPOINT names a camera of the fleet: the address its publisher bound."""
    from streamd.cluster.commands import resolve_camera_endpoint

    endpoint = resolve_camera_endpoint(args.ray_address, args.endpoint)
    print(f"streamd: camera {args.endpoint} publishes on {endpoint}", file=sys.stderr)
    return endpoint
