"""The command line of the reversible path: `streamd keys`, `record`, `restore` and `audit`.

Part of the CLI (like streamd/cli.py, it prints): `add_reversible_commands` adds the subcommands to
the main parser.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from streamd.cluster.lookup import add_cluster_lookup, cluster_endpoint
from streamd.errors import StreamdError
from streamd.progress import progress_display

logger = logging.getLogger("streamd")


def _read_passphrase(path: Path | None) -> bytes | None:
    from streamd.reversible.keys.restore_keys import read_passphrase_file

    return None if path is None else read_passphrase_file(path)


# ---------------------------------------------------------------- keys
def cmd_keys_init(args: argparse.Namespace) -> int:
    from streamd.reversible.keys.restore_keys import generate_restore_keypair

    written = generate_restore_keypair(args.out, _read_passphrase(args.passphrase_file))
    print(f"key id:      {written.key_id}")
    print(f"private key: {written.private_key_path} (mode 0600; keep it with the restore authority)")
    print(f"public key:  {written.public_key_path} (deploy this one to daemon hosts)")
    return 0


def cmd_keys_host(args: argparse.Namespace) -> int:
    from streamd.reversible.keys.host_keys import default_host_key_dir, generate_host_key

    key_id, private_path, public_path = generate_host_key(args.out or default_host_key_dir())
    print(f"host key id: {key_id}")
    print(f"private key: {private_path} (mode 0600; signs this host's recordings; under systemd pass it with "
          f"LoadCredential=streamd-host.key:{private_path})")
    print(f"public key:  {public_path} (give it to the restore authority: streamd keys trust {public_path.name})")
    return 0


def cmd_keys_trust(args: argparse.Namespace) -> int:
    from streamd.reversible.keys.host_keys import trust_host

    host, pinned = trust_host(args.public_key, args.store)
    print(f"trusted host key {host.key_id}: {pinned}")
    return 0


# ---------------------------------------------------------------- record
def cmd_record(args: argparse.Namespace) -> int:
    from streamd.reversible.keys.host_keys import default_host_key_ref, load_host_key
    from streamd.reversible.recording.recorder import Recorder

    host_key = load_host_key(args.host_key or default_host_key_ref())
    endpoint = cluster_endpoint(args) if args.cluster else args.endpoint
    camera = args.camera or (args.endpoint if args.cluster else None)
    recorder = Recorder(endpoint, args.out, segment_seconds=args.segment_seconds, camera=camera, host_key=host_key)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("signal %d: finishing the current segment", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    summary = recorder.run(stop=stop, duration_s=args.duration)
    for path in summary.files:
        print(path)
    keys = (f"camera {recorder.camera} is not reversible (its stream carries no track keys): the recording "
            "cannot be restored" if summary.camera_not_reversible
            else f"{summary.faces_without_keys} faces seen before their track keys, "
                 f"{summary.faces_before_key_frame} face packets before their track's key frame")
    print(f"{summary.frames} frames in {len(summary.files)} segment(s), signed by host key {host_key.key_id}; "
          f"{keys}, {summary.frames_missing} frames missing (never received), "
          f"{summary.invalid_messages} invalid messages", file=sys.stderr)
    if summary.frames == 0:
        print(f"streamd: error: no frame arrived from {endpoint}"
              f"{f' for camera {camera}' if camera else ''} (is a streamd publisher running there?)",
              file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- restore
def _parse_tracks(text: str | None) -> frozenset[int] | None:
    if text is None:
        return None
    try:
        tracks = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise StreamdError(f"--tracks takes comma-separated track ids such as 3,7; got {text!r}") from None
    if not tracks:
        raise StreamdError("--tracks names no track")
    return tracks


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_restore(args: argparse.Namespace) -> int:
    from streamd.reversible.restore.restore import EXIT_PARTIAL, RestoreRequest, restore_recording

    if args.list:
        for path in args.input:
            _list_recording(path, args.thumbnails)
        return 0
    if args.thumbnails is not None:
        raise StreamdError("--thumbnails goes with --list")
    missing = [name for name, value in (("--key", args.key), ("-o/--output", args.output),
                                        ("--reason", args.reason)) if not value]
    if missing:
        raise StreamdError(f"restore needs {' and '.join(missing)} (or --list to show the tracks)")
    request = RestoreRequest(
        input_path=args.input[0], more_inputs=tuple(args.input[1:]), output_path=args.output, key_path=args.key,
        passphrase=_read_passphrase(args.passphrase_file), tracks=_parse_tracks(args.tracks),
        from_s=args.from_s, to_s=args.to_s, mode=args.mode, partial=args.partial,
        expect_camera=args.camera, audit_log_path=args.audit_log, reason=args.reason, force=args.force,
        lossless=args.lossless, allow_unsigned=args.allow_unsigned, trusted_hosts=args.trusted_hosts,
        audio=not args.no_audio,
    )
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    with progress_display(None, "frame", "restoring") as progress:
        result = restore_recording(request, progress)
    print(f"{result.output_path}: {result.frames_written} frames, {result.faces_restored} faces of track(s) "
          f"{', '.join(map(str, result.tracks_restored))} restored")
    for problem in result.problems:
        print(f"streamd: not restored: {problem}", file=sys.stderr)
    return EXIT_PARTIAL if result.problems else 0


def _list_recording(path: Path, thumbnails: Path | None) -> None:
    from streamd.reversible.restore.restore import list_tracks

    recording, summaries = list_tracks(path)
    signed = "signed" if recording.signed else "UNSIGNED (format version 1)"
    if recording.audio_codecs:
        signed += f", audio {', '.join(recording.audio_codecs)}"
    print(f"{path}: camera {recording.camera}, stream epoch {recording.stream_epoch}, "
          f"{len(recording.records)} frames, method {recording.records[0].document['method']}, {signed}"
          + (f" ({'; '.join(recording.problems)})" if recording.problems else ""))
    print(f"{'track':>5}  {'from s':>8}  {'to s':>8}  {'frames':>6}  {'sealed':>6}  key ids")
    for summary in summaries:
        print(f"{summary.track_id:>5}  {summary.first_s:>8.3f}  {summary.last_s:>8.3f}  {summary.frames:>6}  "
              f"{summary.payloads:>6}  {', '.join(summary.key_ids) or '-'}")
    if thumbnails is not None:
        from streamd.reversible.restore.thumbnails import write_track_thumbnails

        for written in write_track_thumbnails(recording, summaries, thumbnails):
            print(f"thumbnail: {written}")


# ---------------------------------------------------------------- audit
def _audit_log(args: argparse.Namespace) -> Path:
    from streamd.reversible.restore.restore import default_audit_log_path

    return args.log or default_audit_log_path()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from streamd.reversible.audit.audit_log import audit_log_head, verify_audit_log
    from streamd.reversible.keys.restore_keys import derive_audit_key, load_private_key

    log = _audit_log(args)
    mac_key = key_id = None
    if args.key is not None:
        private_key = load_private_key(args.key, _read_passphrase(args.passphrase_file))
        mac_key, key_id = derive_audit_key(private_key), private_key.key_id
    problems = verify_audit_log(log, mac_key=mac_key, key_id=key_id)
    if args.head is not None and audit_log_head(log) != args.head and args.head not in _line_hashes(log):
        problems_text = f"the anchored head {args.head} is not in the log: entries were cut off or rewritten"
        print(f"{log}: {problems_text}")
        return 1
    for problem in problems:
        print(f"{log}: {problem}")
    if problems:
        return 1
    print(f"{log}: intact{' and every entry keyed by restore key ' + key_id if key_id else ' (chain only; give --key to check the MACs)'}; "
          f"head {audit_log_head(log)}")
    return 0


def _line_hashes(log: Path) -> set[str]:
    from streamd.reversible.audit.audit_log import line_hash

    return {line_hash(line) for line in log.read_bytes().splitlines() if line}


def cmd_audit_head(args: argparse.Namespace) -> int:
    from streamd.reversible.audit.audit_log import audit_log_head

    print(audit_log_head(_audit_log(args)))
    return 0


# ---------------------------------------------------------------- parser
def add_reversible_commands(commands: argparse._SubParsersAction) -> None:
    """Add `keys`, `record`, `restore` and `audit` to the main parser's subcommands."""
    keys = commands.add_parser("keys", help="manage restore keys and host signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    keys_init = keys_commands.add_parser("init", help="make a restore key pair (restore.key, restore.pub)")
    keys_init.add_argument("--out", type=Path, required=True, help="folder for the two key files")
    keys_init.add_argument("--passphrase-file", type=Path, help="protect the private key with this passphrase")
    keys_init.set_defaults(handler=cmd_keys_init)
    keys_host = keys_commands.add_parser("host", help="make this host's recording signing key (host.key, host.pub)")
    keys_host.add_argument("--out", type=Path, help="folder for the two key files (default ~/.config/streamd; "
                           "/etc/streamd for the service)")
    keys_host.set_defaults(handler=cmd_keys_host)
    keys_trust = keys_commands.add_parser("trust", help="accept recordings signed by a host key (at the authority)")
    keys_trust.add_argument("public_key", type=Path, help="the host's host.pub")
    keys_trust.add_argument("--store", type=Path, help="trust store folder (default ~/.config/streamd/trusted-hosts)")
    keys_trust.set_defaults(handler=cmd_keys_trust)

    record = commands.add_parser("record", help="subscribe to a stream and write signed, restorable MKV segments")
    record.add_argument("endpoint", help="ZeroMQ endpoint of a streamd publisher, e.g. tcp://127.0.0.1:5556")
    record.add_argument("--out", type=Path, required=True, help="folder for the segment files")
    record.add_argument("--segment-seconds", type=float, default=60.0, help="stream seconds per segment")
    record.add_argument("--duration", type=float, help="stop after this many seconds")
    record.add_argument("--camera", help="record this camera id (default: the first one seen)")
    record.add_argument("--host-key", help="host.key that signs the segments, or credential:NAME (default: "
                        "$STREAMD_HOST_KEY, the credential streamd-host.key, ~/.config/streamd/host.key)")
    add_cluster_lookup(record, "ENDPOINT is a camera id of a fleet on a Ray cluster")
    record.set_defaults(handler=cmd_record)

    restore = commands.add_parser("restore", help="restore chosen tracks of a recording (needs a private key)")
    restore.add_argument("input", type=Path, nargs="+",
                         help="a recording file (.mkv), or consecutive segments of one camera's stream epoch, "
                              "restored into one output in time order")
    restore.add_argument("--list", action="store_true", help="show tracks and their spans; needs no key")
    restore.add_argument("--thumbnails", type=Path, metavar="DIR",
                         help="with --list: write one anonymized thumbnail per track (id, first and last seen)")
    restore.add_argument("--key", type=Path, help="restore private key (restore.key, mode 0600)")
    restore.add_argument("-o", "--output", type=Path, help="restored video (.mkv or .mp4), created mode 0600")
    restore.add_argument("--reason", help="why this footage is restored (case, request); required, audited")
    restore.add_argument("--force", action="store_true", help="replace an existing output file")
    restore.add_argument("--tracks", help="comma-separated track ids (default: every track in the span)")
    restore.add_argument("--from", dest="from_s", type=float, help="span start, seconds from the first frame")
    restore.add_argument("--to", dest="to_s", type=float, help="span end, seconds from the first frame")
    restore.add_argument("--mode", choices=["sealed", "neural", "cyclegan"], default="sealed",
                         help="sealed: the sealed original pixels; neural: the method's network (sdn decoder with "
                              "the track key); cyclegan: the CycleGAN's F on a cyclegan recording")
    restore.add_argument("--lossless", action="store_true",
                         help="write 4:4:4 lossless H.264 (large; most players need the default yuv420p)")
    restore.add_argument("--no-audio", action="store_true",
                         help="drop the recording's audio (copied unchanged and in sync by default)")
    restore.add_argument("--passphrase-file", type=Path, help="passphrase of a protected private key")
    restore.add_argument("--camera", help="refuse a recording from any other camera")
    restore.add_argument("--trusted-hosts", type=Path, metavar="DIR",
                         help="pinned host keys (default ~/.config/streamd/trusted-hosts)")
    restore.add_argument("--allow-unsigned", action="store_true",
                         help="restore an old unsigned recording (reported as unauthenticated)")
    restore.add_argument("--partial", action="store_true",
                         help="restore what is intact when some records, faces or segments are not, and list "
                              "exactly what was left out (exit status 3)")
    restore.add_argument("--audit-log", type=Path,
                         help="audit log to append to (default: ~/.local/state/streamd/audit.jsonl)")
    restore.set_defaults(handler=cmd_restore)

    audit = commands.add_parser("audit", help="check the restore audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="AUDIT_COMMAND")
    verify = audit_commands.add_parser("verify", help="check the chain, the MACs and unfinished runs")
    verify.add_argument("log", type=Path, nargs="?", help="audit log (default ~/.local/state/streamd/audit.jsonl)")
    verify.add_argument("--key", type=Path, help="restore.key whose MACs to check (without it: chain only)")
    verify.add_argument("--passphrase-file", type=Path, help="passphrase of a protected private key")
    verify.add_argument("--head", help="a head printed earlier by `streamd audit head`: it must still be in the log")
    verify.set_defaults(handler=cmd_audit_verify)
    head = audit_commands.add_parser("head", help="print the hash of the last entry (anchor it elsewhere)")
    head.add_argument("log", type=Path, nargs="?", help="audit log (default ~/.local/state/streamd/audit.jsonl)")
    head.set_defaults(handler=cmd_audit_head)
