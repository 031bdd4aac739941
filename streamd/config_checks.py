"""Checks of a valid config against the machine it will run on: what would fail at run time.

`streamd validate-config` runs them after the schema: a source file that is not there, an output
folder that is missing or not writable, two cameras writing one file, two sockets (or a socket and
the metrics server) bound to one address. Each problem names the YAML line it comes from. Relative
paths are resolved as the service resolves them: from the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streamd.config import FileSourceConfig, InsightFaceConfig, StreamdConfig

WILDCARD_HOSTS = frozenset({"*", "0.0.0.0", "::", "[::]", ""})


@dataclass(frozen=True)
class Problem:
    path: tuple[Any, ...]
    message: str


@dataclass(frozen=True)
class _Address:
    """Something bound to a host and port (or an ipc/inproc name), with where the config asks for it."""

    kind: str  # "tcp" or the endpoint itself for ipc/inproc
    host: str
    port: int
    path: tuple[Any, ...]
    label: str

    def clashes_with(self, other: "_Address") -> bool:
        if self.kind != "tcp" or other.kind != "tcp":
            return self.kind == other.kind and self.kind != "tcp"
        if self.port == 0 or self.port != other.port:
            return False
        return self.host == other.host or self.host in WILDCARD_HOSTS or other.host in WILDCARD_HOSTS


def _zmq_address(endpoint: str, path: tuple[Any, ...], label: str) -> _Address | None:
    transport, _, rest = endpoint.partition("://")
    if transport != "tcp":
        return _Address(kind=endpoint, host="", port=0, path=path, label=label)
    host, _, port_text = rest.rpartition(":")
    if not port_text.isdigit():  # tcp://host:* (a port chosen at bind time) never clashes
        return None
    host = host.strip("[]")
    return _Address(kind="tcp", host="127.0.0.1" if host == "localhost" else host, port=int(port_text), path=path,
                    label=label)


def _metrics_address(config: StreamdConfig) -> _Address | None:
    if not config.metrics.enabled:
        return None
    host, _, port_text = config.metrics.listen.rpartition(":")
    host = host.strip("[]")
    return _Address(kind="tcp", host="127.0.0.1" if host == "localhost" else host, port=int(port_text),
                    path=("metrics", "listen"), label="the metrics server")


def _address_clashes(config: StreamdConfig) -> list[Problem]:
    addresses: list[_Address] = []
    metrics = _metrics_address(config)
    if metrics is not None:
        addresses.append(metrics)
    for index, camera in enumerate(config.cameras):
        if camera.outputs.zmq is not None:
            address = _zmq_address(camera.outputs.zmq.endpoint, ("cameras", index, "outputs", "zmq", "endpoint"),
                                   f"camera {camera.id}'s ZeroMQ output")
            if address is not None:
                addresses.append(address)
    problems = []
    for later_index, later in enumerate(addresses):
        for earlier in addresses[:later_index]:
            if later.clashes_with(earlier):
                problems.append(Problem(later.path, f"{later.label} binds the address that {earlier.label} binds "
                                                    "already; give each its own port"))
                break
    return problems


def _relative_note(path: Path) -> str:
    return "" if path.is_absolute() else f" (a relative path is read from the working directory, {Path.cwd()})"


def _writable_folder(folder: Path) -> str | None:
    if not folder.exists():
        return f"output folder {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"output folder {folder} is not writable"
    return None


def _path_problems(config: StreamdConfig) -> list[Problem]:
    problems = []
    written: dict[Path, str] = {}
    for index, camera in enumerate(config.cameras):
        where = ("cameras", index)
        source_path = camera.source.path if isinstance(camera.source, FileSourceConfig) else None
        if source_path is not None:
            if not source_path.exists():
                problems.append(Problem(where + ("source", "path"), f"{source_path}: no such file{_relative_note(source_path)}"))
            elif not source_path.is_file():
                problems.append(Problem(where + ("source", "path"), f"{source_path}: is not a file"))
        if isinstance(camera.detector, InsightFaceConfig) and not camera.detector.model_dir.is_dir():
            problems.append(Problem(where + ("detector", "model_dir"), f"{camera.detector.model_dir}: no such folder"))
        if camera.outputs.file is None:
            continue
        output = camera.outputs.file.path
        output_where = where + ("outputs", "file", "path")
        folder_problem = _writable_folder(output.parent if str(output.parent) else Path("."))
        if folder_problem is not None:
            problems.append(Problem(output_where, f"{output}: {folder_problem}{_relative_note(output)}"))
        if source_path is not None and source_path.exists() and output.exists() and output.samefile(source_path):
            problems.append(Problem(output_where, f"{output}: the output would overwrite the camera's source"))
        key = output.resolve()
        if key in written:
            problems.append(Problem(output_where, f"{output}: camera {written[key]} writes this file already"))
        else:
            written[key] = camera.id
    return problems


def run_time_problems(config: StreamdConfig) -> list[Problem]:
    """Everything in `config` that would make a camera fail when it starts, in file order."""
    return _path_problems(config) + _address_clashes(config)


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """The line of each key path of a YAML document (a list index counts as a key)."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                lines[path + (key_node.value,)] = key_node.start_mark.line + 1
                walk(value_node, path + (key_node.value,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, path + (index,))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def describe_problems(problems: list[Problem], text: str, source_name: str) -> list[str]:
    """`FILE:LINE: key.path: problem` for each problem."""
    lines = key_lines(text)
    described = []
    for problem in problems:
        line = next((lines[problem.path[:end]] for end in range(len(problem.path), -1, -1)
                     if problem.path[:end] in lines), None)
        where = f"{source_name}:{line}" if line else source_name
        described.append(f"{where}: {'.'.join(map(str, problem.path))}: {problem.message}")
    return described
