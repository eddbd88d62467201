"""Edge packaging jobs: a COMPLETED compilation job's artifact, packaged as a versioned, signed archive.

The job runs in the server (it only moves and hashes bytes: no user code runs),
as a reconciler step: STARTING -> INPROGRESS -> COMPLETED (or FAILED; STOPPING ->
STOPPED when stopped before its step ran). The archive
``<S3OutputLocation>/<ModelName>-<ModelVersion>.tar.gz`` holds the compiled model's
files (``compiled.meta`` and ``model.onnx`` or ``compiled.so``, docs/compilation.md),
``edge-manifest.json`` (job, model name and version, each file's SHA-256) and
``edge-manifest.sig`` (:mod:`.signing`); the compiled archive is packaged only if it
still has the BLAKE2b digest its compilation job recorded (ModelDigests.ArtifactDigest). Describe shows that signature as
ModelSignature; GetDeployments hands devices the archive's SHA-1 (AWS's checksum type).
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import tempfile
from pathlib import Path

from ...engines import reconciler
from ...objects import transfer
from ...objects.access import AccountObjects, check_s3_uri
from ...objects.base import parse_s3_uri
from ...server.errors import AWSError, validation
from ...server.operations import Context, operation
from ...store.resources import Record, now
from ..jobs.compilation import aws_status
from ..kinds import Kind
from . import signing

log = logging.getLogger("selfmaker.edge")

STATUS = "EdgePackagingJobStatus"
ACTIVE = frozenset({"STARTING", "INPROGRESS", "STOPPING"})
MAX_ARCHIVE_BYTES = 2 << 30  # a compiled edge model is megabytes; refuse what would fill the server's disk


def _compilation_job(ctx: Context, name: str) -> Record | None:
    return ctx.backends.resources.get(ctx.account_id, ctx.region, "CompilationJob", name=name)


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    compiled = _compilation_job(ctx, params["CompilationJobName"])
    if compiled is None:
        raise validation(f"Compilation job {params['CompilationJobName']} does not exist.")
    _check_completed(compiled)
    output = params["OutputConfig"]["S3OutputLocation"]
    if not output.startswith("s3://"):
        raise validation("OutputConfig.S3OutputLocation must be an s3:// URI.")
    check_s3_uri(ctx.backends, ctx.account_id, output, "OutputConfig.S3OutputLocation")
    data[STATUS] = "STARTING"


def _check_completed(compiled: Record) -> None:
    """Only a compilation's output is packaged: AWS refuses a job that has not COMPLETED (yet, or ever)."""
    status = aws_status(compiled.data)
    if status != "COMPLETED":
        raise validation(
            f"Compilation job {compiled.name} is {status}: an edge packaging job needs a COMPLETED compilation job."
        )


def _kick(ctx: Context, arn: str) -> None:
    reconciler.kick(ctx.backends, arn)


def _present(ctx: Context, record: Record) -> dict:
    return {k: v for k, v in record.data.items() if not k.startswith("_")}


def _summary(record: Record) -> dict:
    keep = (
        "EdgePackagingJobArn",
        "EdgePackagingJobName",
        STATUS,
        "CompilationJobName",
        "ModelName",
        "ModelVersion",
        "CreationTime",
        "LastModifiedTime",
    )
    return {k: record.data[k] for k in keep if k in record.data}


def _list_params(params: dict) -> dict:
    if params.get("SortBy") == "MODEL_NAME":
        params = {**params, "SortBy": "Parent"}  # the model name is the job's parent column
    return params


def _model_filter(ctx: Context, params: dict) -> list:
    from ...store.schema import resources

    if params.get("ModelNameContains"):
        return [resources.c.parent.contains(params["ModelNameContains"], autoescape=True)]
    return []


PACKAGING_JOB = Kind(
    "EdgePackagingJob",
    "edge-packaging-job",
    label="edge packaging job",
    operations=("Create", "Describe", "List"),
    status_member=STATUS,
    parent_member="ModelName",
    not_found="Edge packaging job {name} does not exist.",
    not_found_code="ResourceNotFound",
    exists="Edge packaging job {name} already exists.",
    exists_code="ResourceInUse",
    on_create=_on_create,
    after_create=_kick,
    present=_present,
    summarize=_summary,
    list_params=_list_params,
    extra_filters=_model_filter,
).register()


@operation("sagemaker", "StopEdgePackagingJob")
def stop_packaging_job(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = PACKAGING_JOB.load(ctx, params["EdgePackagingJobName"], conn=conn, lock=True)
        if record.status not in ("STARTING", "INPROGRESS"):
            raise validation(f"Edge packaging job {record.name} is {record.status}; it cannot be stopped.")
        record.status = record.data[STATUS] = "STOPPING"
        record.data["LastModifiedTime"] = now()
        ctx.backends.resources.save(record, conn=conn)
    reconciler.kick(ctx.backends, record.arn)
    return {}


# -- the job ---------------------------------------------------------------------------------------------------


class PackagingFailure(Exception):
    """Why the job failed, in the words Describe shows."""


def _set(backends, arn: str, status: str, expect: frozenset, **fields) -> bool:
    moved = []

    def change(record, conn):
        if record.status not in expect:
            return False  # stopped (or ended) meanwhile
        record.status = record.data[STATUS] = status
        record.data.update({k: v for k, v in fields.items() if v is not None})
        moved.append(True)
        return None

    backends.resources.mutate(change, arn=arn)
    return bool(moved)


def _reconcile(backends, record: Record) -> float | None:
    if record.status == "STOPPING":
        _set(backends, record.arn, "STOPPED", frozenset({"STOPPING"}), EdgePackagingJobStatusMessage="Stopped.")
        return None
    if record.status == "STARTING" and not _set(backends, record.arn, "INPROGRESS", frozenset({"STARTING"})):
        return 0.0  # stopped meanwhile: the next step finishes the stop
    try:
        fields = _package(backends, record)
    except PackagingFailure as failure:
        _set(backends, record.arn, "FAILED", frozenset({"INPROGRESS"}), EdgePackagingJobStatusMessage=str(failure))
        return None
    if not _set(backends, record.arn, "COMPLETED", frozenset({"INPROGRESS"}), **fields):
        return 0.0
    return None


def _package(backends, record: Record) -> dict:
    data = record.data
    compiled = backends.resources.get(
        record.account_id, record.region, "CompilationJob", name=data["CompilationJobName"]
    )
    if compiled is None:
        raise PackagingFailure(f"Compilation job {data['CompilationJobName']} no longer exists.")
    if aws_status(compiled.data) != "COMPLETED":  # deleted and made again under its name since Create
        raise PackagingFailure(f"Compilation job {compiled.name} is {aws_status(compiled.data)}, no longer COMPLETED.")
    source = compiled.data["ModelArtifacts"]["S3ModelArtifacts"]
    objects = AccountObjects.of(backends, record.account_id)
    with tempfile.TemporaryDirectory(prefix="selfmaker-edge-") as scratch:
        model_dir = Path(scratch) / "model"
        try:
            bucket, key = parse_s3_uri(source)
            if objects.head_object(bucket, key).size > MAX_ARCHIVE_BYTES:
                raise PackagingFailure(f"The compiled model {source} is larger than {MAX_ARCHIVE_BYTES >> 30} GiB.")
            with tempfile.SpooledTemporaryFile(max_size=transfer.SPOOL_BYTES) as spool:
                transfer.fetch(objects, bucket, key, spool)
                _check_digest(compiled, source, spool)
                transfer.extract_tar(spool, model_dir)
        except (AWSError, transfer.ArchiveError, transfer.OutsideDirectory) as err:
            raise PackagingFailure(f"Could not read the compiled model {source}: {err}") from None
        files = sorted(p for p in model_dir.rglob("*") if p.is_file() and not p.is_symlink())
        if not any(p.name == "compiled.meta" for p in files):
            raise PackagingFailure(f"The compiled model {source} has no compiled.meta: it is not a compilation output.")
        manifest = {
            "EdgePackagingJobName": data["EdgePackagingJobName"],
            "CompilationJobName": compiled.name,
            "ModelName": data["ModelName"],
            "ModelVersion": data["ModelVersion"],
            "Files": {p.relative_to(model_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
        }
        body = signing.manifest_bytes(manifest)
        signature = signing.sign(signing.account_key(backends.store, record.account_id), body)
        archive = _tar_gz(
            [(p.relative_to(model_dir).as_posix(), p.read_bytes()) for p in files]
            + [(signing.MANIFEST, body), (signing.SIGNATURE, signature.encode())]
        )
    version = data["ModelVersion"].replace(" ", "_")
    target = f"{data['OutputConfig']['S3OutputLocation'].rstrip('/')}/{data['ModelName']}-{version}.tar.gz"
    try:
        out_bucket, out_key = parse_s3_uri(target)
        objects.put_object(out_bucket, out_key, archive)
    except AWSError as err:
        raise PackagingFailure(f"Could not write the package to {target}: {err.message}") from None
    fields = {
        "ModelArtifact": target,
        "ModelSignature": signature,
        "_ArchiveSha1": hashlib.sha1(archive).hexdigest(),  # the checksum type AWS agents speak
        "EdgePackagingJobStatusMessage": f"Packaged {len(files)} files ({len(archive)} bytes).",
    }
    preset = data["OutputConfig"].get("PresetDeploymentType")
    if preset:
        fields["PresetDeploymentOutput"] = {
            "Type": preset,
            "Status": "FAILED",
            "StatusMessage": "SelfMaker has no AWS IoT Greengrass: no component was made. Run selfmaker edge-agent.",
        }
    return fields


def _check_digest(compiled: Record, source: str, spool) -> None:
    """The archive is the one the compilation wrote (its ModelDigests): a package signs only what was compiled."""
    expected = (compiled.data.get("ModelDigests") or {}).get("ArtifactDigest", "")
    spool.seek(0)
    if expected.startswith("blake2b:"):
        digest = "blake2b:" + hashlib.file_digest(spool, "blake2b").hexdigest()
        if digest != expected:
            raise PackagingFailure(
                f"The compiled model {source} is not the archive compilation job {compiled.name} wrote: its "
                f"BLAKE2b digest differs from the job's ModelDigests.ArtifactDigest."
            )
        spool.seek(0)


def _tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    """A gzipped tar of ``members``, byte-for-byte the same for the same files (fixed times and owners)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(body), 0o644, 0
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


reconciler.register(reconciler.Controller(PACKAGING_JOB.name, ACTIVE, _reconcile))
