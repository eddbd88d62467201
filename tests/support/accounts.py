"""Two (or more) accounts on one server: a credentials file mapping each access key to its account."""

from __future__ import annotations

from pathlib import Path

SECRET = "secret"


def credentials_file(directory: Path, *accounts) -> Path:
    """An INI credentials file for ``accounts`` (each with ``key`` and ``account``), all with SECRET."""
    path = directory / "credentials.ini"
    path.write_text(
        "".join(f"[{who.key}]\nsecret_access_key = {SECRET}\naccount_id = {who.account}\n\n" for who in accounts)
    )
    return path
