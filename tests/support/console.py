"""The web console over plain HTTP, as a browser without JavaScript would use it: a cookie jar, forms with
their CSRF token, redirects seen (not followed) so a test can assert where they lead."""

from __future__ import annotations

import html
import http.client
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    @property
    def csrf(self) -> str:
        found = _CSRF.search(self.text)
        assert found, f"no CSRF token on the page (status {self.status}): {self.text[:300]}"
        return html.unescape(found.group(1))


class ConsoleBrowser:
    """One visitor of the console at ``url``: keeps the session cookie the server sets."""

    def __init__(self, url: str):
        self.netloc = urlsplit(url).netloc
        self.cookie: str | None = None

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None) -> Answer:
        connection = http.client.HTTPConnection(self.netloc, timeout=30)
        sent = {"Accept": "text/html", **(headers or {})}
        if self.cookie:
            sent["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            pair = header.split(";", 1)[0]
            self.cookie = None if pair.endswith("=") else pair
        return Answer(response.status, response.headers, text)

    def get(self, path: str, **headers) -> Answer:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, form: dict, **headers) -> Answer:
        return self.request("POST", path, form=form, headers=headers)

    def sign_in(self, access_key: str, secret: str) -> Answer:
        form_page = self.get("/console/login")
        return self.post(
            "/console/login",
            {"csrf": form_page.csrf, "access_key": access_key, "secret_key": secret, "next": "/console/"},
        )
