"""Compilation jobs (SageMaker Neo): CreateCompilationJob and friends, compiled for real in sandboxes.

The job unpacks InputConfig.S3Uri (one tar.gz) into its instance's
/opt/ml/input/data/model, runs :mod:`selfmaker.container.neo_compiler` in the
compilation runtime (``selfmaker-neo``, engines/runtimes.py) without a network,
and uploads /opt/ml/model as ``<S3OutputLocation>/<input name>-<target>.tar.gz``.
Describe then names that archive, its BLAKE2b digest, the InferenceImage
that serves it (the same runtime; the model server loads it by its
``compiled.meta``) and the input shape derived when none was given.
What compiles how, and what is refused: docs/compilation.md.

The job machinery's statuses (InProgress, Stopping, Completed, Failed,
Stopped) are kept in ``_Status``; Describe and List speak AWS's upper case,
STARTING while the job's runtime and input are being prepared.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import PurePosixPath

from ...engines import runtimes
from ...objects import transfer
from ...objects.base import parse_s3_uri
from ...server.errors import AWSError, validation
from . import channels
from .data import join_uri, output_error, upload_bytes
from .lifecycle import ACTIVE, JobFailure, JobKind, Run

STATUS = "_Status"
AWS_STATUS = {
    "InProgress": "INPROGRESS",
    "Stopping": "STOPPING",
    "Completed": "COMPLETED",
    "Failed": "FAILED",
    "Stopped": "STOPPED",
}
STATUS_FILTER = {**{v: k for k, v in AWS_STATUS.items()}, "STARTING": "InProgress"}
X86_DEVICES = ("ml_c4", "ml_c5", "ml_m4", "ml_m5")
INSTANCE_TYPE = "ml.c5.xlarge"
TOOLCHAIN_VERSION = "1.0"

# Why a target is refused: what it is, in a few words.
_REFUSED = {
    **dict.fromkeys(("ml_p2", "ml_p3", "ml_g4dn"), "an NVIDIA GPU instance (TensorRT/CUDA)"),
    **dict.fromkeys(("jetson_tx1", "jetson_tx2", "jetson_nano", "jetson_xavier"), "an NVIDIA Jetson (ARM64 + GPU)"),
    **dict.fromkeys(("ml_m6g", "ml_c6g"), "a Graviton (ARM64) instance"),
    **dict.fromkeys(("ml_inf1", "ml_inf2", "ml_trn1"), "an AWS Inferentia/Trainium instance (Neuron compiler)"),
    "ml_eia2": "Elastic Inference (retired by AWS)",
    "lambda": "AWS Lambda",
    "coreml": "Apple Core ML",
    "x86_win32": "a Windows device",
    "x86_win64": "a Windows device",
    "sbe_c": "a Snowball Edge device",
}


def _validate(ctx, params: dict, data: dict) -> None:
    source = params["InputConfig"]["S3Uri"]
    channels.check_uri(ctx, source, "InputConfig.S3Uri")
    output = params["OutputConfig"]
    channels.check_uri(ctx, output["S3OutputLocation"], "OutputConfig.S3OutputLocation")
    if bool(output.get("TargetDevice")) == bool(output.get("TargetPlatform")):
        raise validation("Specify exactly one of OutputConfig.TargetDevice and OutputConfig.TargetPlatform.")
    if params.get("ModelPackageVersionArn"):
        raise validation("SelfMaker compiles models given by InputConfig.S3Uri, not ModelPackageVersionArn.")
    data[STATUS] = "InProgress"
    data["ModelArtifacts"] = {"S3ModelArtifacts": artifact_uri(data)}


def artifact_uri(data: dict) -> str:
    """``<S3OutputLocation>/<input tarball's name>-<target>.tar.gz``, as Neo named its output."""
    output = data["OutputConfig"]
    name = PurePosixPath(parse_s3_uri(data["InputConfig"]["S3Uri"])[1] or "model").name
    base = name[: -len(".tar.gz")] if name.endswith(".tar.gz") else name.rsplit(".", 1)[0] or "model"
    platform = output.get("TargetPlatform") or {}
    target = (
        output.get("TargetDevice")
        or "_".join(filter(None, (platform.get("Os"), platform.get("Arch"), platform.get("Accelerator")))).lower()
    )
    return join_uri(output["S3OutputLocation"], f"{base}-{target}.tar.gz")


def refusal(output: dict) -> str | None:
    """Why SelfMaker cannot compile for this target (None: an x86-64 Linux CPU it compiles for)."""
    device = output.get("TargetDevice")
    supported = f"SelfMaker compiles for x86-64 Linux CPUs: TargetDevice {', '.join(X86_DEVICES)} or TargetPlatform LINUX/X86_64"
    if device:
        if device in X86_DEVICES:
            return None
        what = _REFUSED.get(device, "an edge device with an ARM CPU or an accelerator")
        return f"ClientError: InputConfiguration: TargetDevice {device} is {what}, which SelfMaker cannot compile for. {supported}."
    platform = output["TargetPlatform"]
    if platform.get("Accelerator"):
        return (
            f"ClientError: InputConfiguration: TargetPlatform accelerator {platform['Accelerator']} is not supported. "
            f"{supported}, without an accelerator."
        )
    if (platform["Os"], platform["Arch"]) != ("LINUX", "X86_64"):
        return (
            f"ClientError: InputConfiguration: TargetPlatform {platform['Os']}/{platform['Arch']} is not supported. "
            f"{supported}."
        )
    return None


def _image(data: dict) -> str:
    return _image_uri(data, f"compile-{data['InputConfig']['Framework'].lower()}")


def _image_uri(data: dict, tag: str) -> str:
    """An image of the compilation runtime, in the job's account and region (any account maps to it)."""
    _, _, _, region, account, _ = data["CompilationJobArn"].split(":", 5)
    return f"{account}.dkr.ecr.{region}.amazonaws.com/{runtimes.NEO_REPOSITORY}:{TOOLCHAIN_VERSION}-{tag}"


def inference_image(data: dict) -> str:
    return _image_uri(data, "inference-cpu-py3")


def _prepare(run: Run, instance, runtime) -> None:
    reason = refusal(run.data["OutputConfig"])
    if reason:
        raise JobFailure(reason)
    config = instance.ml / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "compilationjobconfig.json").write_text(
        json.dumps({k: run.data[k] for k in ("CompilationJobName", "InputConfig", "OutputConfig")})
    )
    uri = run.data["InputConfig"]["S3Uri"]
    if not uri.startswith("s3://"):
        raise JobFailure("ClientError: InputConfiguration: InputConfig.S3Uri must name an S3 object (a tar.gz)")
    bucket, key = parse_s3_uri(uri)
    dest = instance.ml / "input" / "data" / "model"
    try:
        transfer.extract_object(run.storage.objects, bucket, key, dest)
    except AWSError as err:
        if err.code in ("NoSuchKey", "NoSuchBucket"):
            raise JobFailure(
                f"ClientError: InputConfiguration: S3 object does not exist. Bucket: {bucket}, Key: {key}"
            ) from None
        raise JobFailure(f"ClientError: InputConfiguration: cannot read {uri}: {err.code}: {err.message}") from None
    except (transfer.NotAnArchive, transfer.ArchiveError):
        raise JobFailure(
            "ClientError: InputConfiguration: Unable to untar input model. Please confirm the model is a tar.gz file"
        ) from None
    except transfer.RefusedMember as err:
        raise JobFailure(
            f"ClientError: InputConfiguration: the model archive holds a member SelfMaker will not unpack: {err.detail}"
        ) from None
    instance.say(f"SelfMaker: model {uri} unpacked")


def _command(run: Run, runtime) -> list[str]:
    return ["python", "-m", "selfmaker.container.neo_compiler"]


def _finish(run: Run, outcome: str, reason: str | None):
    if outcome != "Completed" or run.state.get("phase") != "Running":
        return outcome, reason, {}
    files = run.instances[0].files
    uri = artifact_uri(run.data)
    try:
        meta = json.loads(files.read_text("model/compiled.meta", 1 << 20))
        archive = files.tar_gz("model")
        upload_bytes(run.storage, uri, archive)
    except ValueError:
        return "Failed", "InternalServerError: the compiler wrote no readable compiled.meta", {}
    except Exception as err:
        return "Failed", output_error(uri, err), {}
    fields: dict = {
        "ModelArtifacts": {"S3ModelArtifacts": uri},
        # BLAKE2b, as AWS documents ArtifactDigest; the algorithm named first, the member's pattern is [\w:]+.
        "ModelDigests": {"ArtifactDigest": f"blake2b:{hashlib.blake2b(archive).hexdigest()}"},
        "InferenceImage": inference_image(run.data),
    }
    if meta.get("DerivedDataInputConfig"):
        fields["DerivedInformation"] = {"DerivedDataInputConfig": meta["DerivedDataInputConfig"]}
    return outcome, reason, fields


def _started(data: dict, when: float) -> None:
    data["CompilationStartTime"] = when


def _ended(data: dict, when: float) -> None:
    data["CompilationEndTime"] = when


def aws_status(record_data: dict) -> str:
    """CompilationJobStatus as Describe shows it (an edge packaging job needs COMPLETED)."""
    status = record_data[STATUS]
    if status == "InProgress" and record_data.get("_run", {}).get("phase", "Starting") == "Starting":
        return "STARTING"
    return AWS_STATUS[status]


def _present(ctx, record) -> dict:
    data = record.data
    return {**data, "CompilationJobStatus": aws_status(data), "FailureReason": data.get("FailureReason", "")}


def _summarize(record) -> dict:
    data = record.data
    output = data["OutputConfig"]
    platform = output.get("TargetPlatform") or {}
    summary = {
        "CompilationJobName": data["CompilationJobName"],
        "CompilationJobArn": data["CompilationJobArn"],
        "CreationTime": data["CreationTime"],
        "CompilationStartTime": data.get("CompilationStartTime"),
        "CompilationEndTime": data.get("CompilationEndTime"),
        "CompilationTargetDevice": output.get("TargetDevice"),
        "CompilationTargetPlatformOs": platform.get("Os"),
        "CompilationTargetPlatformArch": platform.get("Arch"),
        "CompilationTargetPlatformAccelerator": platform.get("Accelerator"),
        "LastModifiedTime": data["LastModifiedTime"],
        "CompilationJobStatus": aws_status(data),
    }
    return {k: v for k, v in summary.items() if v is not None}


def _list_params(params: dict) -> dict:
    if params.get("StatusEquals"):
        params = {**params, "StatusEquals": STATUS_FILTER[params["StatusEquals"]]}
    return params


def _delete(ctx, record, conn) -> None:
    if record.data[STATUS] in ACTIVE:
        raise validation(
            f"The compilation job {record.name} is {aws_status(record.data)}: stop it or wait for it to end "
            "before deleting it."
        )
    shutil.rmtree(COMPILATION_JOB.job_dir(ctx, record), ignore_errors=True)


def _component(run: Run) -> dict:
    return {}


COMPILATION_JOB = JobKind(
    "CompilationJob",
    "compilation-job",
    label="compilation job",
    operations=("Create", "Describe", "List", "Delete", "Stop"),
    status_member=STATUS,
    on_create=_validate,
    on_delete=_delete,
    present=_present,
    summarize=_summarize,
    list_params=_list_params,
    not_found="Could not find compilation job with name {name}",
    not_found_code="ResourceNotFound",
    exists="Compilation job names must be unique within an AWS account and region, and a compilation job with "
    "this name already exists ({arn})",
    exists_code="ResourceInUse",
    log_group="/aws/sagemaker/CompilationJobs",
    instance_count=lambda data: 1,
    instance_type=lambda data: INSTANCE_TYPE,
    image=_image,
    network_isolated=lambda data: True,  # the compiler downloads nothing: the server brought the model in
    prepare=_prepare,
    command=_command,
    finish=_finish,
    started=_started,
    ended=_ended,
    component=_component,
    records_experiments=False,  # SageMaker keeps no trial component for a compilation job
).register()
