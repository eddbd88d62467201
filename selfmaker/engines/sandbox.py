"""The sandbox every SageMaker container runs in: its environment and mounts, for any executor.

Jobs (training, processing, transform) and endpoint instances all run one of
our runtimes with the same layout: the runtime read-only at its host path, our
support package at ``/opt/selfmaker/lib`` (importable, never pip-installed into
the runtime), a private pip overlay at ``/opt/selfmaker/site`` (requirements.txt
installs), the instance's directory at ``/opt/ml`` and the AWS settings that
point SDK calls made inside back at this server.

What else of the host the sandbox shows is the executor's business (the local
one: docs/jobs.md, "The sandbox"); here: the runtime's own prefixes (the venv
and the Python it is built on) and the local paths pip's configuration names
(find-links, file:// indexes, certificates, constraints), so a requirements.txt
installs inside the job as it does on the host.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from . import runtime_builds
from .executor import InstanceSpec, Limits, Mount
from .runtimes import Runtime

SUPPORT_ROOT = "/opt/selfmaker"
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The directory holding the `selfmaker` package, bound read-only into every sandbox.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
# pip settings that name local files or directories.
PIP_PATH_SETTINGS = ("find-links", "cert", "client-cert", "constraint")
PIP_INDEX_SETTINGS = ("index-url", "extra-index-url")


@functools.cache
def pip_paths() -> tuple[Path, ...]:
    """Host paths the site-wide pip configuration and the PIP_* environment name (cached: read once per
    server). A file:// index ``.../simple`` is bound with its parent, where such indexes keep the files
    their pages link to (``../../files/...``)."""
    values = runtime_builds.pip_configuration()
    found: list[Path] = []
    for key, value in values:
        if key not in PIP_PATH_SETTINGS + PIP_INDEX_SETTINGS:
            continue
        for item in value.split():
            url = urlparse(item)
            if url.scheme not in ("", "file"):
                continue
            path = Path(unquote(url.path))
            if key in PIP_INDEX_SETTINGS and path.name == "simple":
                path = path.parent
            if path.is_absolute() and path.exists() and len(path.parts) > 2:
                found.append(path)
    return tuple(dict.fromkeys(found))


def spec(
    settings,
    runtime: Runtime,
    *,
    region: str,
    ml: Path,
    site: Path,
    state: Path,
    log: Path,
    env: dict[str, str],
    limits: Limits | None,
    network: bool,
    hostname: str,
    mounts: tuple[Mount, ...] = (),
) -> InstanceSpec:
    """An instance of ``runtime`` with ``ml`` at /opt/ml; ``env`` comes last and wins."""
    endpoint = f"http://127.0.0.1:{settings.port}"
    # --package-index is the jobs' own pip installs' one source too (the host's pip settings are then not passed)
    index_env, index_paths = runtime_builds.pip_in_sandbox(settings.package_index)
    host_pip = {k: v for k, v in os.environ.items() if k.startswith("PIP_") and k != "PIP_TARGET"}
    environment = {
        "PATH": f"{runtime.bin_dir(settings.runtimes_dir)}:{SANDBOX_PATH}",
        "PYTHONPATH": f"{SUPPORT_ROOT}/site:{SUPPORT_ROOT}/lib",
        "PIP_TARGET": f"{SUPPORT_ROOT}/site",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "selfmaker",
        "AWS_SECRET_ACCESS_KEY": "selfmaker",
        **(index_env or host_pip),
        **env,
    }
    site.mkdir(parents=True, exist_ok=True)
    return InstanceSpec(
        command=[],
        env=environment,
        state_dir=state,
        log_path=log,
        mounts=[
            *provided_mounts(runtime, settings.runtimes_dir, index_paths if index_env else None),
            Mount(site, f"{SUPPORT_ROOT}/site", writable=True),
            Mount(ml, "/opt/ml", writable=True),
            *mounts,
        ],
        limits=limits,
        network=network,
        hostname=hostname,
        workdir="/opt/ml",
        hidden=[str(settings.data_dir)],
        runtime=runtime,
        runtimes_dir=settings.runtimes_dir,
    )


def provided_mounts(
    runtime: Runtime, runtimes_dir: Path, pip_local: tuple[Path, ...] | list[Path] | None = None
) -> list[Mount]:
    """What the machine running the instance provides itself, marked so: the runtime's prefixes, pip's local
    paths (``pip_local``: --package-index's wheelhouse; else that machine's pip settings) and our support
    package. An executor on another machine provides its own (ray_node.py)."""
    return [
        *(Mount(prefix, str(prefix), provided=True) for prefix in runtime.roots(runtimes_dir)),
        *(Mount(path, str(path), provided=True) for path in (pip_paths() if pip_local is None else pip_local)),
        Mount(PACKAGE_PARENT / "selfmaker", f"{SUPPORT_ROOT}/lib/selfmaker", provided=True),
    ]
