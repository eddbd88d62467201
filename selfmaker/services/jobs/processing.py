"""Processing jobs: CreateProcessingJob and friends, run for real in sandboxes.

Each ProcessingInput is copied to its LocalPath (under /opt/ml/processing/,
inside the instance's /opt/ml), the job runs ContainerEntrypoint +
ContainerArguments, and each ProcessingOutput's LocalPath is uploaded to its
S3Uri at the end (or as files appear, for S3UploadMode Continuous).
/opt/ml/config holds processingjobconfig.json and resourceconfig.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ...engines.executor import Upload
from ...server.errors import validation
from . import channels
from .confined import ConfinedDir
from .data import InputError, materialize, output_error, upload_files
from .lifecycle import ACTIVE, REASON_LIMIT, JobFailure, JobKind, Run

LOCAL_ROOT = "/opt/ml/processing/"
CONTINUOUS_SECONDS = 1.0


def _validate(ctx, params: dict, data: dict) -> None:
    seen_paths = set()
    for item in params.get("ProcessingInputs") or []:
        where = f"ProcessingInput {item['InputName']}"
        source = item.get("S3Input")
        if source is None:
            raise validation(f"{where}: only S3Input inputs are supported by SelfMaker (not DatasetDefinition).")
        channels.check_input_mode(source.get("S3InputMode"), where)
        channels.check_compression(source.get("S3CompressionType"), where)
        channels.check_s3_source(ctx, source, where)
        _check_local_path(source["LocalPath"], where, seen_paths)
    for item in (params.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
        where = f"ProcessingOutput {item['OutputName']}"
        target = item.get("S3Output")
        if target is None:
            raise validation(f"{where}: only S3Output outputs are supported by SelfMaker (not FeatureStoreOutput).")
        channels.check_uri(ctx, target["S3Uri"], f"{where}: S3Uri")
        _check_local_path(target["LocalPath"], where, set())
    data["ProcessingJobStatus"] = "InProgress"


def _check_local_path(path: str, where: str, seen: set) -> None:
    normalized = str(Path(path))
    if not (path + "/").startswith(LOCAL_ROOT) or ".." in Path(path).parts or normalized + "/" == LOCAL_ROOT:
        raise validation(f"{where}: LocalPath {path!r} must be an absolute path under {LOCAL_ROOT}")
    if normalized in seen:
        raise validation(f"{where}: LocalPath {path!r} is used by another input.")
    seen.add(normalized)


def _delete(ctx, record, conn) -> None:
    if record.data["ProcessingJobStatus"] in ACTIVE:
        raise validation(
            f"The processing job {record.name} is {record.data['ProcessingJobStatus']}: stop it before deleting it."
        )
    shutil.rmtree(PROCESSING_JOB.job_dir(ctx, record), ignore_errors=True)


def _inside(instance, local_path: str) -> Path:
    """Where a container path under /opt/ml lives on the host."""
    return instance.ml / Path(local_path).relative_to("/opt/ml")


def _instance_count(data: dict) -> int:
    return data["ProcessingResources"]["ClusterConfig"].get("InstanceCount") or 1


def _instance_type(data: dict) -> str:
    return data["ProcessingResources"]["ClusterConfig"].get("InstanceType") or "ml.m5.large"


def _image(data: dict) -> str:
    return data["AppSpecification"]["ImageUri"]


def _network_isolated(data: dict) -> bool:
    return bool((data.get("NetworkConfig") or {}).get("EnableNetworkIsolation"))


def _prepare(run: Run, instance, runtime) -> None:
    data = run.data
    config = instance.ml / "config"
    config.mkdir(parents=True, exist_ok=True)
    request = {
        k: data[k]
        for k in (
            "ProcessingJobArn",
            "ProcessingJobName",
            "AppSpecification",
            "Environment",
            "ProcessingInputs",
            "ProcessingOutputConfig",
            "ProcessingResources",
            "RoleArn",
            "StoppingCondition",
            "NetworkConfig",
        )
        if k in data
    }
    (config / "processingjobconfig.json").write_text(json.dumps(request))
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {
                "current_host": instance.host,
                "hosts": [i.host for i in run.instances],
                "current_instance_type": _instance_type(data),
                "current_group_name": "homogeneousCluster",
                "network_interface_name": run.placement.interface if run.placement else "eth0",
            }
        )
    )
    for item in data.get("ProcessingInputs") or []:
        source = item["S3Input"]
        try:
            materialize(
                run.storage,
                source["S3Uri"],
                _inside(instance, source["LocalPath"]),
                data_type=source.get("S3DataType", "S3Prefix"),
                distribution=source.get("S3DataDistributionType", "FullyReplicated"),
                index=instance.index - 1,
                count=len(run.instances),
                say=instance.say,
                fetches=instance.fetches,
            )
        except InputError as err:
            raise JobFailure(str(err)) from None
    for item in _outputs(data):
        _inside(instance, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)


def _command(run: Run, runtime) -> list[str]:
    app = run.data["AppSpecification"]
    entrypoint = app.get("ContainerEntrypoint") or list(runtime.command)
    if not entrypoint:
        raise JobFailure(
            f"ClientError: the image {app['ImageUri']} has no default entrypoint in SelfMaker; "
            "set AppSpecification.ContainerEntrypoint"
        )
    return [*entrypoint, *(app.get("ContainerArguments") or [])]


def _outputs(data: dict) -> list[dict]:
    return [o for o in (data.get("ProcessingOutputConfig") or {}).get("Outputs") or [] if o.get("S3Output")]


def _uploads(run: Run, instance) -> list[Upload]:
    """What an instance's node uploads itself once it ended well: each output's LocalPath, file by file
    (Continuous outputs too: the node's files are out of the server's reach while it runs). A ``file://``
    output is a path of the server's host: its files come back and the server writes them."""
    return [
        Upload(_inside(instance, o["S3Output"]["LocalPath"]), o["S3Output"]["S3Uri"])
        for o in _outputs(run.data)
        if o["S3Output"]["S3Uri"].startswith("s3://")
    ]


def _while_running(run: Run) -> float | None:
    continuous = [o for o in _outputs(run.data) if o["S3Output"].get("S3UploadMode") == "Continuous"]
    if not continuous or not run.job.executor(run.backends).shares_files:
        return None
    try:
        _upload(run, continuous, changed_only=True)  # links are reported once, by the last upload
    except Exception as err:
        raise JobFailure(output_error("of the processing job", err)) from None
    return CONTINUOUS_SECONDS


def _upload(run: Run, outputs: list[dict], changed_only: bool = False) -> None:
    """Upload each output's LocalPath: the job's plain files only (its links are skipped, never followed)."""
    sent = run.backends.services.setdefault("processing-uploaded", {})
    storage = run.storage
    for instance in run.instances:
        files = ConfinedDir(instance.ml, "/opt/ml") if changed_only else instance.files
        for item in outputs:
            sub = str(Path(item["S3Output"]["LocalPath"]).relative_to("/opt/ml"))
            stamps = {e.relative: (e.mtime_ns, e.size) for e in files.files(sub)}
            seen = {r: (instance.root, sub, r) for r in stamps}
            fresh = [r for r in stamps if sent.get(seen[r]) != stamps[r]] if changed_only else list(stamps)
            if fresh:
                upload_files(storage, files, sub, item["S3Output"]["S3Uri"], fresh)
                sent.update({seen[r]: stamps[r] for r in fresh})


def _finish(run: Run, outcome: str, reason: str | None):
    fields: dict = {}
    message = run.instances[0].files.read_text("output/message", REASON_LIMIT)
    if message:
        fields["ExitMessage"] = message
    if run.state.get("phase") != "Running" or outcome == "Failed":
        return outcome, reason, fields
    outputs = _outputs(run.data)
    if not run.job.executor(run.backends).shares_files:  # the nodes uploaded the S3 ones (_uploads)
        outputs = [o for o in outputs if not o["S3Output"]["S3Uri"].startswith("s3://")]
    try:
        _upload(run, outputs)
    except Exception as err:
        return "Failed", output_error("of the processing job", err), fields
    return outcome, reason, fields


def _started(data: dict, when: float) -> None:
    data["ProcessingStartTime"] = when


def _ended(data: dict, when: float) -> None:
    data["ProcessingEndTime"] = when


def _component(run: Run) -> dict:
    data = run.data
    inputs = {i["InputName"]: {"Value": i["S3Input"]["S3Uri"]} for i in data.get("ProcessingInputs") or []}
    inputs["SageMaker.ImageUri"] = {"Value": _image(data)}
    outputs = {o["OutputName"]: {"Value": o["S3Output"]["S3Uri"]} for o in _outputs(data)}
    return {
        "parameters": {
            "SageMaker.InstanceType": _instance_type(data),
            "SageMaker.InstanceCount": _instance_count(data),
        },
        "input_artifacts": inputs,
        "output_artifacts": outputs,
        "start_time": data.get("ProcessingStartTime"),
    }


PROCESSING_JOB = JobKind(
    "ProcessingJob",
    "processing-job",
    label="processing job",
    operations=("Create", "Describe", "List", "Delete", "Stop"),
    status_member="ProcessingJobStatus",
    on_create=_validate,
    on_delete=_delete,
    not_found="Could not find requested job with name {name}",
    exists="Processing job names must be unique within an AWS account and region, and a processing job with this "
    "name already exists ({arn})",
    exists_code="ResourceInUse",
    log_group="/aws/sagemaker/ProcessingJobs",
    instance_count=_instance_count,
    instance_type=_instance_type,
    image=_image,
    network_isolated=_network_isolated,
    prepare=_prepare,
    command=_command,
    while_running=_while_running,
    finish=_finish,
    uploads=_uploads,
    started=_started,
    ended=_ended,
    component=_component,
    on_cluster=True,
).register()
