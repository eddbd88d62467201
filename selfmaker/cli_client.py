"""What the client commands (`ps`, `logs`, `doctor`) share: a boto3 session aimed at a SelfMaker server,
one-line errors instead of tracebacks, and output as a table for people or JSON for scripts.

The server is the truth: these commands ask it through the API, with the caller's own credentials from the
usual places (AWS_* variables, ~/.aws/config and credentials, --profile), so they work against a strict-mode
server as the SDK does. Nothing configured points at a local server, never at AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from .config import DEFAULT_PORT, DEFAULT_REGION

# The codes a SelfMaker (or AWS) front door answers when it does not accept the caller's key or signature.
REFUSED_CODES = {
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
}
# Open mode accepts any key: a machine with no AWS credentials at all still talks to a local server.
FALLBACK_KEY = "selfmaker"


class CommandError(Exception):
    """A one-line answer for the user; the command exits with ``status``."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        help=f"the SelfMaker server (default: $AWS_ENDPOINT_URL or endpoint_url of the AWS config, "
        f"else http://localhost:{DEFAULT_PORT})",
    )
    parser.add_argument("--region", help=f"default: $AWS_REGION, the AWS config's region, else {DEFAULT_REGION}")
    parser.add_argument("--profile", help="a profile of ~/.aws/config and ~/.aws/credentials (default $AWS_PROFILE)")


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


class Connection:
    """Clients of one server, made as boto3 makes them for the SDK."""

    def __init__(self, endpoint_url: str | None = None, region: str | None = None, profile: str | None = None):
        import boto3
        import botocore.exceptions

        try:
            self.session = boto3.Session(profile_name=profile, region_name=region)
        except botocore.exceptions.ProfileNotFound as err:
            raise CommandError(f"selfmaker: {err}") from None
        self.region = self.session.region_name or DEFAULT_REGION
        credentials = self.session.get_credentials()
        self.access_key = credentials.access_key if credentials else FALLBACK_KEY
        self._secret = None if credentials else FALLBACK_KEY
        self._explicit_endpoint = endpoint_url
        self.endpoint_url = self._resolve_endpoint()

    def _resolve_endpoint(self) -> str:
        if self._explicit_endpoint:
            return self._explicit_endpoint.rstrip("/")
        configured = self._make("sagemaker", None).meta.endpoint_url
        if ".amazonaws.com" in configured:  # nothing configured: boto3 chose AWS itself, which is never meant here
            port = os.environ.get("SELFMAKER_PORT", str(DEFAULT_PORT))
            return f"http://localhost:{port}"
        return configured.rstrip("/")

    def _make(self, service: str, endpoint_url: str | None):
        from botocore.config import Config

        options = {}
        if self._secret:  # no credentials anywhere: the open-mode key
            options = dict(aws_access_key_id=self.access_key, aws_secret_access_key=self._secret)
        return self.session.client(
            service,
            endpoint_url=endpoint_url,
            region_name=self.region,
            # Two tries and short connect timeouts: a stopped server is said at once, not after a minute.
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60),
            **options,
        )

    def client(self, service: str):
        return self._make(service, self.endpoint_url)

    @classmethod
    def from_args(cls, args) -> Connection:
        return cls(args.endpoint_url, args.region, args.profile)


def explain(err: BaseException, endpoint_url: str, access_key: str) -> str | None:
    """One line saying what went wrong talking to the server, or None for an error that is not about that."""
    import botocore.exceptions

    if isinstance(
        err,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
        ),
    ):
        return (
            f"selfmaker: cannot reach the SelfMaker server at {endpoint_url}: is `selfmaker serve` running there? "
            "(choose another with --endpoint-url or AWS_ENDPOINT_URL)"
        )
    if isinstance(err, botocore.exceptions.ClientError):
        error = err.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        message = message.strip().splitlines()[0] if message.strip() else ""  # SigV4's has the canonical request
        if code in REFUSED_CODES:
            return (
                f"selfmaker: the server at {endpoint_url} refused the credentials (access key {access_key}): {message} "
                "(use a key of its credentials file: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --profile)"
            )
        return f"selfmaker: {err.operation_name}: {message or code} ({code})"
    if isinstance(err, botocore.exceptions.BotoCoreError):
        return f"selfmaker: {err}"
    return None


def run(command: Callable[[Connection], int], args) -> int:
    """Run a client command with a connection from ``args``; errors become one line on stderr."""
    connection = None
    try:
        connection = Connection.from_args(args)
        return command(connection)
    except CommandError as err:
        print(str(err), file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `selfmaker ps | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141
    except Exception as err:
        line = explain(err, connection.endpoint_url if connection else "?", connection.access_key if connection else "")
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


# -- times ------------------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """'90s', '15m', '2h', '3d', '1w' (or plain seconds) -> seconds; argparse type."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 2h, 3d or 1w")
    return float(match[1]) * _UNIT_SECONDS[match[2]]


def age(when: datetime | None, now: float | None = None) -> str:
    """How long ago, the way `docker ps` says it: 45s, 12m, 3h, 5d."""
    if when is None:
        return "-"
    seconds = max(0, int((now or time.time()) - when.timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when else None


# -- output -----------------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], out=None, width: int | None = None) -> None:
    """Columns padded to their widest cell; the last column is cut to the terminal's width."""
    out = out or sys.stdout
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    width = width or (os.get_terminal_size(out.fileno()).columns if out.isatty() else 0)
    for row in [list(headers), *rows]:
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1]))
        line = f"{line}  {row[-1]}" if len(row) > 1 else row[-1]
        if width and len(line) > width:
            line = line[: width - 1] + "…"
        print(line.rstrip(), file=out)


def print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))
