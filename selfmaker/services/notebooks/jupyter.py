"""One notebook instance's JupyterLab: its files on disk, its sandboxed process, and whether it answers.

Everything lives under ``<data dir>/notebooks/<account>/<region>/<name>/``:

- ``volume/``: /home/ec2-user/SageMaker, the persistent volume, kept across Stop/Start, removed on Delete;
- ``home/``: the rest of /home/ec2-user (Jupyter's settings, pip --user), fresh at every start as on AWS;
- ``state/``: the executor's files (pid, exit status), so a restarted server finds the process again;
- ``instance.log``: Jupyter's output; ``shut-down``: a clean server stop ended it (start it again).

Jupyter listens only on a Unix socket in a short private directory (0700, this server's user): nothing
but this server's proxy can reach it, which is why Jupyter's own token is off (docs/notebooks.md).
"""

from __future__ import annotations

import http.client
import os
import shutil
from pathlib import Path

from ...backends import Backends
from ...engines import instance_types, model_server, runtimes, sandbox
from ...engines.executor import Mount
from ..jobs import credentials
from ..jobs.lifecycle import executor

HOME = "/home/ec2-user"
VOLUME = f"{HOME}/SageMaker"
SOCKET_INSIDE = "/opt/selfmaker/run/jupyter.sock"
GIT_CA_INSIDE = "/opt/selfmaker/git-ca.pem"
PROXY_PREFIX = "/_selfmaker/notebooks"  # server/app.py routes it here


def base_path(account_id: str, region: str, name: str) -> str:
    """The instance's path on the SelfMaker port (Jupyter's base_url), ending in '/'."""
    return f"{PROXY_PREFIX}/{account_id}/{region}/{name.lower()}/"


class Files:
    def __init__(self, backends: Backends, account_id: str, region: str, name: str):
        self.root = backends.settings.data_dir / "notebooks" / account_id / region / name.lower()
        self.base_path = base_path(account_id, region, name)

    volume = property(lambda self: self.root / "volume")
    home = property(lambda self: self.root / "home")
    state = property(lambda self: self.root / "state")
    log = property(lambda self: self.root / "instance.log")
    shut_down = property(lambda self: self.root / "shut-down")

    @property
    def socket(self) -> Path:
        return model_server.socket_dir(self.root) / "jupyter.sock"

    def say(self, line: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as f:
            f.write(f"SelfMaker: {line}\n")

    def last_output(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(model_server.socket_dir(self.root), ignore_errors=True)


def prepare(backends: Backends, files: Files) -> runtimes.Runtime:
    """Build the runtime if needed and give the instance a fresh home (the volume stays as it is)."""
    runtime = runtimes.notebook()
    settings = backends.settings
    runtimes_dir = settings.runtimes_dir or settings.data_dir / "runtimes"  # set by Settings
    runtimes.ensure(runtime, runtimes_dir, files.say, **runtimes.options(settings))
    shutil.rmtree(files.home, ignore_errors=True)
    shutil.rmtree(files.state, ignore_errors=True)
    for directory in (files.volume, files.home / "SageMaker", files.root / "ml"):
        directory.mkdir(parents=True, exist_ok=True)
    files.socket.unlink(missing_ok=True)
    files.shut_down.unlink(missing_ok=True)
    return runtime


def instance_spec(backends: Backends, files: Files, data: dict, runtime, *, state: Path, log: Path):
    """The sandbox of the instance ``data`` (its record) describes: its type's caps, its volume, its network."""
    limits = instance_types.limits(data["InstanceType"])
    git_ca = git_ca_bundle()
    spec = sandbox.spec(
        backends.settings,
        runtime,
        region=data["NotebookInstanceArn"].split(":")[3],
        ml=files.root / "ml",
        site=files.root / "site",
        state=state,
        log=log,
        env={
            "HOME": HOME,
            "JUPYTER_CONFIG_DIR": f"{HOME}/.jupyter",
            "JUPYTER_DATA_DIR": f"{HOME}/.local/share/jupyter",
            "JUPYTER_RUNTIME_DIR": f"{HOME}/.local/share/jupyter/runtime",
            "IPYTHONDIR": f"{HOME}/.ipython",
            "NOTEBOOK_INSTANCE_NAME": data["NotebookInstanceName"],
            # The owning account's key for this start (controller.py): boto3 and the SageMaker SDK in a
            # cell call SelfMaker (AWS_ENDPOINT_URL, set by the sandbox) as that account.
            **(credentials.environment(data) if data.get("_credentials") else {}),
            **({"GIT_SSL_CAINFO": GIT_CA_INSIDE} if git_ca else {}),
        },
        limits=limits,
        network=data.get("DirectInternetAccess", "Enabled") == "Enabled",
        hostname=data["NotebookInstanceName"].lower()[:63],
        mounts=(
            Mount(files.home, HOME, writable=True),
            Mount(files.volume, VOLUME, writable=True),
            _socket_mount(files),
            *([Mount(git_ca, GIT_CA_INSIDE)] if git_ca else []),
        ),
    )
    spec.workdir = VOLUME
    return spec


def git_ca_bundle() -> Path | None:
    """The CA bundle the server's own GIT_SSL_CAINFO names (a private Git server's CA), shown read-only to
    the instance's git (the repositories' clones, a terminal's git pull); None if it names no file."""
    path = os.environ.get("GIT_SSL_CAINFO")
    return Path(path) if path and Path(path).is_file() else None


def launch(backends: Backends, files: Files, data: dict, runtime) -> None:
    """Start JupyterLab for the instance described by ``data`` (its record), detached (the executor's)."""
    limits = instance_types.limits(data["InstanceType"])
    files.say(
        f"starting JupyterLab ({data['InstanceType']}: {limits.cpus} CPU, {limits.memory_bytes >> 20} MiB, "
        f"network {'on' if data.get('DirectInternetAccess', 'Enabled') == 'Enabled' else 'off'})"
    )
    spec = instance_spec(backends, files, data, runtime, state=files.state, log=files.log)
    spec.command = [
        "python",
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ServerApp.sock={SOCKET_INSIDE}",
        "--ServerApp.sock_mode=0600",
        f"--ServerApp.base_url={files.base_path}",
        f"--ServerApp.root_dir={VOLUME}",
        # The proxy is the only way in and checks its own signed cookie (docs/notebooks.md).
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.terminals_enabled=True",
    ]
    executor(backends).start(spec)


def _socket_mount(files: Files) -> Mount:
    directory = model_server.socket_dir(files.root)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Mount(directory, str(Path(SOCKET_INSIDE).parent), writable=True)


def running(backends: Backends, files: Files) -> bool:
    return (files.state / "pid").exists() and executor(backends).poll(files.state) is None


def exit_reason(backends: Backends, files: Files) -> str:
    status = executor(backends).poll(files.state)
    if status is None:
        return "it is still running"
    how = f"exited with code {status.code}" if status.code is not None else f"ended ({status.reason})"
    last = files.last_output()
    return f"{how}: {last}" if last else how


def stop(backends: Backends, files: Files, grace: float = 5.0) -> None:
    if (files.state / "pid").exists():
        executor(backends).stop(files.state, grace)


def answers(files: Files, timeout: float = 2.0) -> bool:
    """Whether Jupyter answers GET <base>api on its socket."""
    if not files.socket.exists():
        return False
    connection = model_server.UnixConnection(files.socket, timeout=timeout)
    try:
        connection.request("GET", f"{files.base_path}api")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (TimeoutError, OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
