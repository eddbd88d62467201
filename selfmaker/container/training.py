"""The SageMaker training toolkit's contract, inside the sandbox (``python -m selfmaker.container.training``).

It does what ``sagemaker-training`` does for the framework images' ``train``
command: read /opt/ml/input/config, split ``sagemaker_*`` hyperparameters from
the user's, build the SM_* environment, install the code's requirements.txt
(into the job's own pip overlay, PIP_TARGET, never the shared runtime), run
``python <program> --key value ...`` from /opt/ml/code, and on failure write
/opt/ml/output/failure (which becomes the job's FailureReason). The code
itself was unpacked into /opt/ml/code by SelfMaker before the job started.

With no ``sagemaker_program``, an image's built-in algorithm runs instead: the
module named by SELFMAKER_ALGORITHM.

Standard library only: it runs in every runtime.
"""

from __future__ import annotations

import json
import os
import runpy
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

BASE = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
CONFIG = BASE / "input" / "config"
CODE = BASE / "code"
FAILURE = BASE / "output" / "failure"


def _load(name: str) -> dict:
    path = CONFIG / name
    return json.loads(path.read_text()) if path.exists() else {}


def _decode(value: str):
    """Hyperparameters are strings; the SDK JSON-encodes its sagemaker_* ones (raw string if not JSON)."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _as_env(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def to_cmd_args(hyperparameters: dict) -> list[str]:
    """``--key value`` pairs in key order, dicts as ``k=v,k2=v2`` (sagemaker_training.mapping.to_cmd_args)."""
    args = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        args.append(f"--{key}" if len(key) > 1 else f"-{key}")
        if isinstance(value, dict):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(str(value))
    return args


def environment(hyperparameters: dict, program: str, framework_params: dict) -> dict[str, str]:
    """The SM_* variables (sagemaker_training.environment.Environment.to_env_vars)."""
    resource = _load("resourceconfig.json")
    data_config = _load("inputdataconfig.json")
    hosts = sorted(resource.get("hosts", ["algo-1"]))
    current = resource.get("current_host", "algo-1")
    group = resource.get("current_group_name", "homogeneousCluster")
    groups = resource.get("instance_groups", [])
    channels = sorted(data_config)
    module_name = program[:-3] if program.endswith(".py") else program
    user_args = to_cmd_args(hyperparameters)
    values = {
        "hosts": hosts,
        "network_interface_name": resource.get("network_interface_name", "eth0"),
        "hps": hyperparameters,
        "user_entry_point": program,
        "framework_params": framework_params,
        "resource_config": resource,
        "input_data_config": data_config,
        "output_data_dir": str(BASE / "output" / "data"),
        "channels": channels,
        "current_host": current,
        "current_instance_type": resource.get("current_instance_type", "local"),
        "current_instance_group": group,
        "current_instance_group_hosts": hosts,
        "instance_groups": [g.get("instance_group_name") for g in groups] or [group],
        "instance_groups_dict": {g.get("instance_group_name"): g for g in groups},
        "distribution_instance_groups": [],
        "is_hetero": False,
        "module_name": module_name,
        "log_level": 20,
        "framework_module": None,
        "input_dir": str(BASE / "input"),
        "input_config_dir": str(CONFIG),
        "output_dir": str(BASE / "output"),
        "num_cpus": len(os.sched_getaffinity(0)),
        "num_gpus": int(gpus) if (gpus := os.environ.get("SM_NUM_GPUS", "")).isdigit() else 0,  # the executor's
        "num_neurons": 0,
        "model_dir": str(BASE / "model"),
        "module_dir": framework_params.get("sagemaker_submit_directory", str(CODE)),
        "user_args": user_args,
        "output_intermediate_dir": str(BASE / "output" / "intermediate"),
        "job_name": framework_params.get("sagemaker_job_name", os.environ.get("TRAINING_JOB_NAME", "")),
        "master_hostname": hosts[0],
        "is_master": current == hosts[0],
        "channel_input_dirs": {c: str(BASE / "input" / "data" / c) for c in channels},
    }
    env = {
        f"SM_{key.upper()}": _as_env(value)
        for key, value in values.items()
        if key not in ("job_name", "master_hostname", "is_master", "channel_input_dirs")
    }
    env["SM_TRAINING_ENV"] = json.dumps(values)
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(BASE / "input" / "data" / channel)
    for key, value in hyperparameters.items():
        env[f"SM_HP_{key.upper()}"] = _as_env(value)
    env.update(
        {
            "SAGEMAKER_JOB_NAME": values["job_name"],
            "CURRENT_HOST": current,
            "SAGEMAKER_REGION": os.environ.get("AWS_REGION", ""),
        }
    )
    return env


def _enabled(value) -> bool:
    return value in (True, "true", "True", 1)


TORCHRUN_PORT = 7777  # the training toolkit's master port for torch_distributed


def torchrun(env: dict) -> list[str] | None:
    """The torchrun command of torch_distributed: one node per host, the first (sorted) host the master, one
    process per host on CPU instances (per GPU on GPU ones, which SelfMaker does not have). None without torch.

    On one machine every job's master is its own loopback address (``Executor.place``), but torch's store
    listens on every address: a port derived from that address keeps two jobs' masters apart."""
    launcher = Path(sys.executable).with_name("torchrun")
    if not launcher.exists():
        return None
    hosts = json.loads(env["SM_HOSTS"])
    current = env["SM_CURRENT_HOST"]
    port = TORCHRUN_PORT
    try:
        octets = [int(part) for part in socket.gethostbyname(hosts[0]).split(".")]
    except (OSError, ValueError):
        octets = []
    if len(octets) == 4 and octets[0] == 127 and octets[1] != 0:
        port = 20000 + (octets[1] * 256 + octets[2]) % 20000
    return [
        str(launcher),
        f"--nnodes={len(hosts)}",
        "--nproc_per_node=1",
        f"--node_rank={hosts.index(current)}",
        f"--master_addr={hosts[0]}",
        f"--master_port={port}",
    ]


def fail(message: str, code: int = 1) -> int:
    FAILURE.parent.mkdir(parents=True, exist_ok=True)
    with open(FAILURE, "a") as f:
        f.write(message)
    print(message, file=sys.stderr, flush=True)
    return code


def _run(command: list[str], env: dict, cwd: Path) -> tuple[int, list[str]]:
    """Run ``command`` with stderr passed through and its last lines kept for the failure message."""
    proc = subprocess.Popen(command, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True, errors="replace")
    # A stopped job's SIGTERM reaches every process of the instance: the toolkit outlives it to report how
    # the script ends, so a script that traps it can save a checkpoint before the instance goes.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    tail: list[str] = []

    def pump():
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line.rstrip("\n"))
            del tail[:-20]

    pump_thread = threading.Thread(target=pump, daemon=True)
    pump_thread.start()
    code = proc.wait()
    pump_thread.join()
    return code, tail


def _error_message(tail: list[str]) -> str:
    """The exception line of a traceback (the last line naming an error), as the toolkit reports it."""
    for line in reversed(tail):
        if line.strip() and not line.startswith(" "):
            return line.strip()
    return tail[-1].strip() if tail else ""


def main() -> int:
    raw = _load("hyperparameters.json")
    decoded = {k: _decode(v) for k, v in raw.items()}
    framework = {k: v for k, v in decoded.items() if k.startswith(("sagemaker_", "_"))}
    user = {k: v for k, v in decoded.items() if k not in framework}
    program = framework.get("sagemaker_program")
    env = {**os.environ, **environment(user, program or "", framework)}
    if not program:
        algorithm = os.environ.get("SELFMAKER_ALGORITHM")
        if not algorithm:
            return fail(
                "ClientError: the training job has no sagemaker_program hyperparameter and its image has "
                "no built-in algorithm in SelfMaker; set one, or a ContainerEntrypoint"
            )
        os.environ.update(env)
        runpy.run_module(algorithm, run_name="__main__", alter_sys=True)
        return 0
    requirements = CODE / "requirements.txt"
    if requirements.exists():
        print(f"SelfMaker: installing {requirements} into the job's environment", flush=True)
        code, tail = _run([sys.executable, "-m", "pip", "install", "-r", str(requirements)], env, CODE)
        if code != 0:
            return fail(
                f'InstallRequirementsError:\nExitCode {code}\nErrorMessage "{_error_message(tail)}"\n'
                f'Command "{sys.executable} -m pip install -r requirements.txt"',
                code,
            )
    if _enabled(framework.get("sagemaker_torch_distributed_enabled")):
        launcher = torchrun(env)
        if launcher is None:
            return fail(
                "ClientError: distribution torch_distributed launches torchrun, which this image's runtime does not "
                "have (no torch): use a PyTorch training image"
            )
        command = [*launcher, program, *to_cmd_args(user)]
    elif program.endswith(".py"):
        command = [sys.executable, program, *to_cmd_args(user)]
    else:
        # Each argument quoted, as the toolkit does: a hyperparameter's value is data, never shell syntax.
        command = ["/bin/sh", "-c", " ".join(shlex.quote(arg) for arg in [f"./{program}", *to_cmd_args(user)])]
    code, tail = _run(command, env, CODE)
    if code != 0:
        return fail(
            f'ExecuteUserScriptError:\nExitCode {code}\nErrorMessage "{_error_message(tail)}"\n'
            f'Command "{" ".join(command)}"',
            code,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
