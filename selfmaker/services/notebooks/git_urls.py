"""Checks of what a caller hands in to name a Git repository (URL, branch, credentials), before git sees it.

Shared by CreateCodeRepository (selfmaker/services/catalog.py) and notebook instances (:mod:`.repositories`).
Only https:// URLs (the service model's patterns accept nothing else) of a host, without whitespace, control
characters or backslashes; a branch that cannot pass for an option.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ...server.errors import validation

# A directory name git would choose and nothing else: no "..", no hidden or option-looking names.
_DIRECTORY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def check_url(url: str) -> None:
    """Refuse a repository URL git must not be handed (ValidationException)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (a malformed port raises)
        hosted = bool(parts.hostname)
    except ValueError:
        hosted = False
    if _UNSAFE.search(url) or parts.scheme != "https" or not hosted or url.startswith("-"):
        raise validation(
            f"Invalid repository URL {url!r}: SelfMaker clones only https:// URLs of a host, without spaces "
            "or control characters."
        )
    directory(url)


def directory(url: str) -> str:
    """The directory ``git clone`` would make for ``url`` (its last path segment, less .git), if safe."""
    last = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    name = last[:-4] if last.endswith(".git") else last
    if not _DIRECTORY.fullmatch(name):
        raise validation(
            f"Cannot clone {url!r}: the last segment of its path ({name!r}) is not a directory name "
            "SelfMaker clones into (letters, digits, '.', '_' and '-', not starting with '.' or '-')."
        )
    return name


def check_branch(branch: str) -> None:
    if branch.startswith("-") or _UNSAFE.search(branch) or ".." in branch:
        raise validation(f"Invalid branch {branch!r} for a code repository.")


def refuse_secret(git_config: dict) -> None:
    if git_config.get("SecretArn"):
        raise validation(
            "GitConfig.SecretArn is not supported: SelfMaker has no Secrets Manager to read the repository's "
            "credentials from (docs/notebooks.md). Use a repository that can be cloned without credentials."
        )
