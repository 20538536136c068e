"""``batch-transform s3``: the embedded S3 server (SeaweedFS on 127.0.0.1) and the few object
commands the demo needs (mb, put, head)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.cli.args import _config
from runner.cli.console import err
from runner.cli.exit_codes import ExitCode


def add_s3_parser(sub: Any) -> None:
    s3 = sub.add_parser("s3", help="the embedded S3 server (SeaweedFS on 127.0.0.1)")
    s3.add_argument("--data-dir", help="default: <home>/s3")
    s3sub = s3.add_subparsers(dest="s3_command", required=True)
    start = s3sub.add_parser("start", help="start it and print the export lines")
    start.add_argument("--port", type=int)
    s3sub.add_parser("env", help="print the export lines of the running server")
    s3sub.add_parser("stop", help="stop the server this data dir started")
    put = s3sub.add_parser("put", help="upload a file or folder (creates the bucket)")
    put.add_argument("source")
    put.add_argument("dest", help="s3://bucket/prefix/ (or s3://bucket/key for one file)")
    mb = s3sub.add_parser("mb", help="make a bucket")
    mb.add_argument("uri", help="s3://bucket")
    head = s3sub.add_parser("head", help="print the first lines of an object")
    head.add_argument("uri")
    head.add_argument("-n", "--lines", type=int, default=5)
    s3.set_defaults(func=cmd_s3)


def cmd_s3(args: argparse.Namespace) -> int:
    from runner.storage.embedded import EmbeddedS3

    data_dir = Path(args.data_dir) if args.data_dir else _config(args).data_dir / "s3"
    server = EmbeddedS3(data_dir)
    if args.s3_command == "start":
        info = server.start(port=args.port)
        err.print(f"embedded S3 (SeaweedFS) on {info.endpoint}, data in {data_dir}", highlight=False)
        _print_exports(info.env)
    elif args.s3_command == "env":
        _print_exports(server.env())
    elif args.s3_command == "stop":
        server.stop()
        err.print("embedded S3 stopped")
    elif args.s3_command == "put":
        return _s3_put(args.source, args.dest)
    elif args.s3_command == "mb":
        from runner.storage import storage_for

        storage_for(args.uri).ensure_bucket(args.uri)
    elif args.s3_command == "head":
        return _s3_head(args.uri, args.lines)
    return ExitCode.OK


def _s3_head(uri: str, lines: int) -> int:
    """Print an object's first lines (the demo shows its output this way)."""
    from runner.storage import storage_for

    err.print(f"first {lines} lines of {uri}:", highlight=False)
    buf = b""
    for chunk in storage_for(uri).iter_chunks(uri, chunk_size=64 * 1024):
        buf += chunk
        if buf.count(b"\n") >= lines:
            break
    text = b"\n".join(buf.split(b"\n")[:lines]).decode("utf-8", errors="replace")
    print(text, flush=True)
    return ExitCode.OK


def _print_exports(env: Mapping[str, str]) -> None:
    # For `eval "$(batch-transform s3 env)"`; printed on stdout only, never logged.
    for k, v in env.items():
        print(f"export {k}={v}")


def _s3_put(source: str, dest: str) -> int:
    from runner.storage import storage_for

    src = Path(source)
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    storage = storage_for(dest)
    storage.ensure_bucket(dest)
    for f in files:
        target = dest.rstrip("/") + "/" + (f.relative_to(src).as_posix() if src.is_dir() else f.name)
        if not src.is_dir() and not dest.endswith("/"):
            target = dest
        with storage.open_writer(target) as w:
            with open(f, "rb") as fh:
                while chunk := fh.read(8 * 1024 * 1024):
                    w.write(chunk)
            w.commit()
        err.print(f"uploaded {f} -> {target}", highlight=False)
    return ExitCode.OK
