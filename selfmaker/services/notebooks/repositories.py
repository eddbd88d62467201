"""Git repositories of notebook instances: the default one and up to three more, cloned into the volume.

Each is named by a CodeRepository of the instance's account or given by its URL (as on AWS), and is cloned
into /home/ec2-user/SageMaker/<directory>, <directory> being what ``git clone`` itself would choose (the
URL's last path segment without ".git"), once: at the first start after it was associated (Create, or an
Update that associates it). A directory that already exists in the volume is left as it is.

Every URL is hostile until checked: only https:// (what the service model's patterns accept), no
whitespace or control characters, no option-looking values. The clone runs ``git clone -- URL DIR`` (no
shell) in the instance's own sandbox, which shows it the volume and nothing else of the host to write to,
with every transport but https refused (``protocol.allow``), no credential prompts, no system or global git
configuration and no hook templates, within :data:`CLONE_SECONDS`. A Secrets Manager secret
(``GitConfig.SecretArn``) is refused at Create: SelfMaker has no Secrets Manager (docs/notebooks.md).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ...backends import Backends
from ...server.errors import validation
from ...store.resources import Record
from ..catalog import CODE_REPOSITORY
from ..jobs.lifecycle import executor
from . import jupyter
from .git_urls import check_branch, check_url, directory, refuse_secret

CLONE_SECONDS = 300.0  # per repository, as long as a lifecycle script may run
POLL = 0.1
# Git's own configuration for the clone: https is the only transport, nothing runs, nothing prompts.
GIT_SETTINGS = (
    "protocol.allow=never",
    "protocol.https.allow=always",
    "credential.helper=",
    "core.askPass=",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "submodule.recurse=false",
)
GIT_ENVIRONMENT = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/false",
    "SSH_ASKPASS": "/bin/false",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_PROTOCOL_FROM_USER": "0",
}


def resolve(ctx, data: dict) -> list[dict]:
    """The instance's repositories (default first) as {Repository, Url, Branch?, Directory}; refuses what
    cannot be cloned. A name is looked up among the account's CodeRepositories (it must exist)."""
    references = [data.get("DefaultCodeRepository"), *(data.get("AdditionalCodeRepositories") or [])]
    resolved: list[dict] = []
    for reference in filter(None, references):
        if "://" in reference:
            git_config = {"RepositoryUrl": reference}
        else:
            git_config = CODE_REPOSITORY.load(ctx, reference).data["GitConfig"]
            refuse_secret(git_config)
        check_url(git_config["RepositoryUrl"])
        entry = {"Repository": reference, "Url": git_config["RepositoryUrl"]}
        if git_config.get("Branch"):
            check_branch(git_config["Branch"])
            entry["Branch"] = git_config["Branch"]
        entry["Directory"] = directory(entry["Url"])
        clash = next((r for r in resolved if r["Directory"] == entry["Directory"]), None)
        if clash is not None:
            raise validation(
                f"Code repositories {clash['Repository']} and {reference} would both be cloned into "
                f"{jupyter.VOLUME}/{entry['Directory']}."
            )
        resolved.append(entry)
    return resolved


def pending(data: dict) -> list[dict]:
    """The repositories not cloned yet (each is cloned once: the _Cloned keys in the record)."""
    done = set(data.get("_Cloned") or [])
    return [r for r in data.get("_Repositories") or [] if key(r) not in done]


def key(repository: dict) -> str:
    return f"{repository['Directory']} {repository['Url']}"


def clone(backends: Backends, files: jupyter.Files, record: Record, runtime, repository: dict) -> str | None:
    """Clone ``repository`` into the volume; the FailureReason if it cannot, else None."""
    target = files.volume / repository["Directory"]
    if os.path.lexists(target):  # the user's (or an earlier clone's): never overwritten
        files.say(f"{jupyter.VOLUME}/{repository['Directory']} exists: {repository['Url']} is not cloned again")
        return None
    state, log = files.root / "clone-state", files.root / "clone.log"
    shutil.rmtree(state, ignore_errors=True)
    log.unlink(missing_ok=True)
    # The clone is SelfMaker's work, not the notebook's: it has network even when DirectInternetAccess is
    # Disabled (the instance's own processes never do), and none of the instance's credentials.
    spec = jupyter.instance_spec(
        backends, files, {**record.data, "DirectInternetAccess": "Enabled"}, runtime, state=state, log=log
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        spec.env.pop(name, None)
    spec.env.update(GIT_ENVIRONMENT)
    branch = [f"--branch={repository['Branch']}"] if repository.get("Branch") else []
    spec.command = [
        "git",
        *(arg for setting in GIT_SETTINGS for arg in ("-c", setting)),
        "clone",
        "--template=",
        "--no-recurse-submodules",
        *branch,
        "--",
        repository["Url"],
        f"{jupyter.VOLUME}/{repository['Directory']}",
    ]
    files.say(f"cloning {repository['Url']} into {jupyter.VOLUME}/{repository['Directory']}")
    ex = executor(backends)
    ex.start(spec)
    started = time.monotonic()
    while (status := ex.poll(state)) is None and time.monotonic() - started < CLONE_SECONDS:
        time.sleep(POLL)
    if status is None:
        ex.stop(state)
        ex.stop(state, 0)
    output = _tail(log)
    shutil.rmtree(state, ignore_errors=True)
    if status is not None and status.succeeded:
        return None
    if not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)  # a partial clone (git removes its own, unless killed)
    what = f"Unable to clone code repository {repository['Repository']}"
    if status is None:
        return f"{what}: git did not finish within {CLONE_SECONDS:.0f} s."
    return f"{what} ({repository['Url']}): {output or status.reason or f'git exited with {status.code}'}"


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[:600]
