"""A Git server on loopback for the tests (there is no internet): bare repositories served over https with
git's "dumb" HTTP protocol (static files after ``git update-server-info``), under a self-signed certificate
for 127.0.0.1 that the test hands the SelfMaker server as its GIT_SSL_CAINFO."""

from __future__ import annotations

import functools
import http.server
import os
import ssl
import subprocess
import threading
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


class GitServer:
    """``repository(name, {branch: {path: text}})`` adds a bare repository; ``url(name)`` is its https URL."""

    def __init__(self, root: Path):
        self.root = root
        self.served = root / "served"
        self.served.mkdir(parents=True)
        self.certificate = root / "cert.pem"
        key = root / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
            + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(self.certificate)],
            check=True,
            capture_output=True,
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, key)
        handler = functools.partial(_Quiet, directory=str(self.served))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}/{name}.git"

    def repository(self, name: str, branches: dict[str, dict[str, str]]) -> str:
        work = self.root / "work" / name
        work.mkdir(parents=True)
        _git("init", "--quiet", "--initial-branch", next(iter(branches)), cwd=work)
        for number, (branch, files) in enumerate(branches.items()):
            if number:
                _git("checkout", "--quiet", "-b", branch, cwd=work)
            for path, text in files.items():
                (work / path).write_text(text)
            _git("add", "--all", cwd=work)
            _git("commit", "--quiet", "-m", f"{branch}: {', '.join(files)}", cwd=work)
        _git("checkout", "--quiet", next(iter(branches)), cwd=work)
        bare = self.served / f"{name}.git"
        _git("clone", "--quiet", "--bare", str(work), str(bare), cwd=self.root)
        _git("update-server-info", cwd=bare)
        return self.url(name)

    def close(self) -> None:
        self.httpd.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass  # the test's output is not the place for the server's access log
