"""The credentials file: which access keys exist, their secrets, and the account each belongs to.

An INI file with one section per access key, in the spirit of ``~/.aws/credentials``::

    # Alice, in account 111111111111 (comments take whole lines)
    [AKIAALICE0000000001]
    secret_access_key = alice-secret
    account_id = 111111111111
    user_name = alice

It is read once at start-up and validated strictly: a typo here would otherwise
surface later as a puzzling signature error.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_ACCOUNT_ID = re.compile(r"\d{12}")
# AWS access key ids are 16-128 word characters; we also allow shorter, readable test keys,
# but nothing that would break the "<key>/<date>/<region>/<service>/aws4_request" credential.
_ACCESS_KEY = re.compile(r"[A-Za-z0-9_.+-]{1,128}")
_USER_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_REQUIRED = ("secret_access_key", "account_id")
_OPTIONAL = ("user_name",)


@dataclass(frozen=True)
class Credential:
    access_key: str
    secret_key: str
    account_id: str
    user_name: str = ""


def load_credentials(path: Path) -> dict[str, Credential]:
    """access key -> Credential, or a ValueError that names the file, the key and the problem."""
    parser = configparser.ConfigParser(interpolation=None, strict=True, default_section="\x00no-defaults")
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise ValueError(f"cannot read credentials file {path}: {exc.strerror or exc}") from None
    except configparser.DuplicateSectionError as exc:
        raise ValueError(f"{path}: access key {exc.section} is listed twice (line {exc.lineno})") from None
    except configparser.DuplicateOptionError as exc:
        raise ValueError(f"{path}: [{exc.section}] sets {exc.option} twice (line {exc.lineno})") from None
    except configparser.Error as exc:
        raise ValueError(f"{path} is not a valid credentials file: {exc.message}") from None

    credentials = {}
    for key in parser.sections():
        section = parser[key]
        where = f"{path}: [{key}]"
        if not _ACCESS_KEY.fullmatch(key):
            raise ValueError(f"{where}: an access key may hold only letters, digits and _ . + - (at most 128)")
        missing = [name for name in _REQUIRED if not section.get(name, "").strip()]
        if missing:
            raise ValueError(f"{where} lacks {' and '.join(missing)}")
        unknown = sorted(set(section) - {*_REQUIRED, *_OPTIONAL})
        if unknown:
            raise ValueError(
                f"{where}: unknown setting {', '.join(unknown)} (expected {', '.join(_REQUIRED + _OPTIONAL)})"
            )
        account_id = section["account_id"].strip()
        if not _ACCOUNT_ID.fullmatch(account_id):
            raise ValueError(f"{where}: account_id must be 12 digits, not {account_id!r}")
        user_name = section.get("user_name", "").strip()
        if user_name and not _USER_NAME.fullmatch(user_name):
            raise ValueError(f"{where}: user_name {user_name!r} is not a valid IAM user name")
        credentials[key] = Credential(key, section["secret_access_key"].strip(), account_id, user_name)
    if not credentials:
        raise ValueError(
            f"{path} lists no access keys: add a [<access key>] section with secret_access_key and account_id"
        )
    return credentials


class KeyRing:
    """The access keys a server knows: the credentials file's, the keys it granted to its own workloads,
    and, through ``resolver``, keys that live elsewhere (a workload another server started: the shared
    database knows it; services/jobs/credentials.py sets the resolver)."""

    def __init__(self, keys: dict[str, Credential]):
        self._keys = dict(keys)
        self.resolver: Callable[[str], Credential | None] | None = None

    def get(self, access_key: str) -> Credential | None:
        known = self._keys.get(access_key)
        if known is None and self.resolver is not None:
            return self.resolver(access_key)
        return known

    def __setitem__(self, access_key: str, credential: Credential) -> None:
        self._keys[access_key] = credential

    def pop(self, access_key: str, default: Credential | None = None) -> Credential | None:
        return self._keys.pop(access_key, default)

    def __len__(self) -> int:
        return len(self._keys)
