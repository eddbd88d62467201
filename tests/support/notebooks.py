"""Notebook instances from the outside: wait for a status, open the presigned URL as a browser does, and run
code in a kernel through Jupyter's REST and WebSocket API behind the proxy."""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

from support.waiting import wait_for


def wait(sm, name: str, status: str, timeout: float = 600) -> dict:
    """Describe ``name`` until it is ``status`` (or Failed). The first start of a run builds the JupyterLab
    runtime (pip), hence the long default."""
    return wait_for(
        lambda: sm.describe_notebook_instance(NotebookInstanceName=name),
        lambda d: d["NotebookInstanceStatus"] in (status, "Failed"),
        timeout=timeout,
        interval=0.2,
        what=f"{name} to be {status}",
    )


class Browser:
    """urllib with a cookie jar that follows redirects: what a browser does with the presigned URL."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, url: str, **headers) -> tuple[int, bytes, str]:
        try:
            with self.opener.open(urllib.request.Request(url, headers=headers), timeout=30) as r:
                return r.status, r.read(), r.url
        except urllib.error.HTTPError as err:
            return err.code, err.read(), url

    def send(self, method: str, url: str, body: dict) -> tuple[int, dict]:
        xsrf = next((c.value for c in self.jar if c.name == "_xsrf"), "")
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "X-XSRFToken": xsrf},
        )
        try:
            with self.opener.open(request, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, {"error": err.read().decode(errors="replace")}

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def open_instance(sm, name: str) -> tuple[Browser, str]:
    """A browser logged in to ``name`` through a fresh presigned URL, and the instance's base URL."""
    url = sm.create_presigned_notebook_instance_url(NotebookInstanceName=name)["AuthorizedUrl"]
    browser = Browser()
    status, page, landed = browser.get(url)
    assert status == 200, page[:500]
    assert urlsplit(landed).path.endswith("/lab"), landed
    assert b"JupyterLab" in page or b"jupyter" in page.lower()
    return browser, url.split("?", 1)[0]


def start_kernel(browser: Browser, base: str) -> str:
    # Browsers need Jupyter's _xsrf cookie for writes; the lab page set it.
    status, kernel = browser.send("POST", f"{base}api/kernels", {"name": "python3"})
    assert status == 201, kernel
    return kernel["id"]


def execute(browser: Browser, base: str, kernel: str, code: str, timeout: float = 120) -> dict:
    """Run ``code`` in ``kernel`` over its WebSocket channels: {"stdout", "result", "error"} once it is idle."""
    from websockets.sync.client import connect

    ws_url = f"ws://{urlsplit(base).netloc}{urlsplit(base).path}api/kernels/{kernel}/channels"
    msg_id = uuid.uuid4().hex
    request = {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        },
        "parent_header": {},
        "metadata": {},
        "content": {"code": code, "silent": False, "store_history": False},
        "channel": "shell",
    }
    out: dict = {"stdout": "", "result": None, "error": None}
    deadline = time.monotonic() + timeout
    with connect(ws_url, additional_headers={"Cookie": browser.cookie_header()}) as ws:
        ws.send(json.dumps(request))

        def answered() -> bool:
            message = json.loads(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                return False
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content.get("name") == "stdout":
                out["stdout"] += content["text"]
            elif kind == "execute_result":
                out["result"] = content["data"]["text/plain"]
            elif kind == "error":
                out["error"] = f"{content['ename']}: {content['evalue']}"
            return kind == "status" and content.get("execution_state") == "idle"

        wait_for(answered, timeout=timeout, interval=0, what=f"the kernel to run {code[:60]!r}")
    return out
