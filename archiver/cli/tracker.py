"""`archiver tracker serve`: run the tracker's HTTP API (library: archiver.tracker.app)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from archiver.cli.grab import parse_size
from archiver.errors import UsageError
from archiver.tracker import TOKEN_ENV

DEFAULT_STORE = "sqlite:///tracker"
DEFAULT_BIND = "127.0.0.1:9080"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tracker", help="run an Archive Team compatible tracker for volunteer workers",
                       description="Hand out items to volunteer workers (seesaw pipelines or archiver workers) "
                                   "and keep the WARCs they upload once they pass the checker.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    s = actions.add_parser(
        "serve", help="serve the tracker's HTTP API",
        description="Serve the tracker: worker routes (/<project>/request, done, upload, ...), the admin API under "
                    "/admin (Bearer token) and the OpenAPI document at /openapi.json. The admin token comes from "
                    f"--admin-token-file or ${TOKEN_ENV}; the tracker does not start without one.")
    s.add_argument("--store", default=DEFAULT_STORE, metavar="URL",
                   help=f"sqlite:///DIR (embedded; default {DEFAULT_STORE}) or redis://HOST:PORT/DB (shared by "
                        "several tracker processes)")
    s.add_argument("--bind", default=DEFAULT_BIND, metavar="HOST:PORT", help=f"where to listen (default {DEFAULT_BIND})")
    s.add_argument("--admin-token-file", metavar="FILE", help=f"file holding the admin token (else ${TOKEN_ENV})")
    s.add_argument("--uploads", metavar="DIR", help="where uploaded WARCs go (default: DIR/uploads of a SQLite "
                                                    "store; required with Redis)")
    s.add_argument("--public-url", metavar="URL", help="the tracker's address as workers reach it, for upload "
                                                       "targets (default: the address each request came to)")
    s.add_argument("--chunk-size", type=parse_size, default=10 * 1024**3, metavar="BYTES",
                   help="batch accepted uploads for packing at this size (default 10GiB)")
    s.add_argument("--chunk-age", type=float, default=3600.0, metavar="SECONDS",
                   help="... or when the oldest has waited this long (default 3600)")
    s.add_argument("--ia-endpoint", metavar="URL",
                   help="publish packs to this S3-compatible endpoint instead of the Internet Archive (tests, "
                        "staging; also ARCHIVER_IA_ENDPOINT). Packs go up only for projects with upload settings; "
                        "keys come from IA_ACCESS_KEY/IA_SECRET_KEY or `ia configure`")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="tracker processes sharing the port and the store (default 1)")
    s.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="do not log every request (a busy tracker answers thousands a second)")
    s.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="proxies (a load balancer) whose X-Forwarded-For is trusted for client addresses")
    s.set_defaults(run=run_serve)


def read_token(path: str | None) -> str:
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UsageError(f"cannot read the admin token file {path}: {e.strerror or e}") from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"the tracker does not start without an admin token: put one in a file for "
                         f"--admin-token-file, or in ${TOKEN_ENV} (make one with: python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))')")
    return token


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--bind {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9080 or 0.0.0.0:9080")
    return host.strip("[]"), int(port)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from archiver.tracker.app import SETTINGS_ENV, create_app

    token = read_token(args.admin_token_file)
    host, port = parse_bind(args.bind)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    settings = {"uploads_dir": args.uploads, "public_url": args.public_url, "chunk_bytes": args.chunk_size,
                "chunk_age": args.chunk_age, "ia_endpoint": args.ia_endpoint}
    # Built here even with --workers, so a bad store or token stops the command before any worker starts.
    app = create_app(args.store, token, **settings)
    options: dict = {"access_log": args.access_log}
    if args.forwarded_allow_ips:
        options["forwarded_allow_ips"] = args.forwarded_allow_ips
    print(f"archiver tracker: serving {args.store} on http://{host}:{port}/ (API document: /docs)", flush=True)
    if args.workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info", **options)
        return 0
    app.state.tracker.close()
    os.environ[SETTINGS_ENV] = json.dumps({"store_url": args.store, **settings})
    os.environ[TOKEN_ENV] = token  # the workers are new processes: they read both from the environment
    serve_workers(host, port, args.workers, options)
    return 0


def serve_workers(host: str, port: int, workers: int, options: dict) -> None:
    """uvicorn's multi-process mode on a listening socket of our own.

    uvicorn binds the shared socket without saying it is TCP (proto 0), and asyncio then leaves TCP_NODELAY off
    on every connection accepted from it: each small answer waits for the client's delayed ACK, about 40 ms, so
    a worker could do some 25 requests a second per connection. A socket made with IPPROTO_TCP avoids that."""
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("archiver.tracker.app:app_from_environment", factory=True, host=host, port=port,
                            workers=workers, log_level="info", **options)
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()
