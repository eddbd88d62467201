"""Training jobs: CreateTrainingJob and friends, run for real in sandboxes.

The image's runtime runs either the job's ContainerEntrypoint (v3 ModelTrainer
sends ``/bin/bash -c ...sm_train.sh``) or SelfMaker's training toolkit
(:mod:`selfmaker.container.training`: v2 script mode, or the image's built-in
algorithm). /opt/ml/model becomes ``<S3OutputPath>/<job>/output/model.tar.gz``
and /opt/ml/output/data ``output.tar.gz`` (uploaded by the server, or, on an
executor that does not share files, by the instance's node: ``_uploads``);
metrics come from the MetricDefinitions' regexes over the log.
"""

from __future__ import annotations

import json
import math
import shutil

import regex

from ...container import xgboost_algorithm
from ...engines import runtimes
from ...engines.executor import Upload
from ...server.errors import validation
from ...store.resources import now
from .. import experiment_metrics, experiments
from ..algorithms.resource import for_training
from . import channels
from .data import InputError, extract_code, join_uri, materialize, output_error, upload_bytes
from .lifecycle import ACTIVE, JobFailure, JobKind, Run

# A MetricDefinition's Regex runs on the server over its job's log: at most this long each time.
METRIC_REGEX_SECONDS = 1.0

# Metric definitions of built-in algorithms (by the algorithm module a runtime names), used with the job's own.
ALGORITHM_METRIC_DEFINITIONS: dict[str, list[dict]] = {
    xgboost_algorithm.__name__: xgboost_algorithm.builtin_metric_definitions(),
}


def _validate(ctx, params: dict, data: dict) -> None:
    spec = params.get("AlgorithmSpecification") or {}
    if spec.get("AlgorithmName"):
        for_training(ctx, params, data)
    elif not spec.get("TrainingImage"):
        raise validation("AlgorithmSpecification: give TrainingImage or AlgorithmName.")
    channels.check_input_mode(spec.get("TrainingInputMode"), "AlgorithmSpecification.TrainingInputMode")
    names = set()
    for channel in params.get("InputDataConfig") or []:
        where = f"Channel {channel['ChannelName']}"
        if channel["ChannelName"] in names:
            raise validation(f"Channel names must be unique: {channel['ChannelName']} appears twice.")
        names.add(channel["ChannelName"])
        channels.check_input_mode(channel.get("InputMode"), where)
        channels.check_compression(channel.get("CompressionType"), where)
        source = channel["DataSource"].get("S3DataSource")
        if source is None:
            raise validation(f"{where}: only S3DataSource channels are supported by SelfMaker.")
        channels.check_s3_source(ctx, source, where)
    output = params["OutputDataConfig"].get("S3OutputPath", "")
    channels.check_uri(ctx, output, "OutputDataConfig.S3OutputPath")
    checkpoint = (params.get("CheckpointConfig") or {}).get("S3Uri")
    if checkpoint:
        channels.check_uri(ctx, checkpoint, "CheckpointConfig.S3Uri")
    submit = _hyperparameter(params, "sagemaker_submit_directory")
    if submit:
        channels.check_uri(ctx, str(submit), "HyperParameters.sagemaker_submit_directory")
    _check_distribution(params)
    if not params.get("StoppingCondition"):
        data["StoppingCondition"] = {"MaxRuntimeInSeconds": 86400}
    data.update(
        TrainingJobStatus="InProgress",
        SecondaryStatus="Starting",
        SecondaryStatusTransitions=[
            {
                "Status": "Starting",
                "StartTime": data["CreationTime"],
                "StatusMessage": "Launching requested ML instances",
            }
        ],
        EnableNetworkIsolation=bool(params.get("EnableNetworkIsolation")),
        EnableInterContainerTrafficEncryption=bool(params.get("EnableInterContainerTrafficEncryption")),
        EnableManagedSpotTraining=bool(params.get("EnableManagedSpotTraining")),
    )


# Script mode's ``distribution`` launchers SelfMaker cannot run, by the hyperparameter the SageMaker SDK sets for
# each, and why. torch_distributed (sagemaker_torch_distributed_enabled) runs: the toolkit launches torchrun.
UNSUPPORTED_LAUNCHERS = {
    "sagemaker_distributed_dataparallel_enabled": "smdistributed dataparallel (SageMaker's data parallel library) "
    "needs NVIDIA GPUs and AWS's smddp library, which SelfMaker's instances do not have",
    "sagemaker_mpi_enabled": "MPI (distribution mpi, and smdistributed modelparallel, which runs under it) needs "
    "mpirun and SSH between the instances, which SelfMaker's sandboxes do not run",
    "sagemaker_pytorch_ddp_enabled": "pytorchddp launches through mpirun and SSH between the instances, which "
    "SelfMaker's sandboxes do not run",
    "sagemaker_parameter_server_enabled": "parameter_server (TensorFlow's parameter servers) is not run by "
    "SelfMaker's training toolkit",
}


def _check_distribution(params: dict) -> None:
    """Refuse a ``distribution`` whose launcher cannot run here, before anything starts."""
    for name, why in UNSUPPORTED_LAUNCHERS.items():
        if _hyperparameter(params, name) in (True, "true", "True", 1):
            raise validation(
                f"HyperParameters.{name}: {why}. Use distribution={{'torch_distributed': {{'enabled': True}}}} "
                "with a PyTorch image (torchrun), or a training script that starts its own workers."
            )


def _present(ctx, record) -> dict:
    data = dict(record.data)
    data.setdefault("ModelArtifacts", {"S3ModelArtifacts": ""})
    if "OutputDataConfig" in data:  # AWS answers an empty KmsKeyId when none was given (Estimator.attach reads it)
        data["OutputDataConfig"] = {"KmsKeyId": "", **data["OutputDataConfig"]}
    return data


def _delete(ctx, record, conn) -> None:
    if record.data["TrainingJobStatus"] in ACTIVE:
        raise validation(
            f"The training job {record.name} is {record.data['TrainingJobStatus']}: stop it before deleting it."
        )
    shutil.rmtree(TRAINING_JOB.job_dir(ctx, record), ignore_errors=True)


def _update(ctx, params: dict, record) -> None:
    if record.data["TrainingJobStatus"] not in ACTIVE:
        raise validation(
            f"The training job {record.name} is {record.data['TrainingJobStatus']}; "
            "only a job in progress can be updated."
        )
    for member in ("ProfilerConfig", "ProfilerRuleConfigurations", "RemoteDebugConfig"):
        if member in params:
            record.data[member] = params[member]
    if "ResourceConfig" in params:
        record.data.setdefault("ResourceConfig", {}).update(params["ResourceConfig"])
    current = record.data["SecondaryStatus"]
    _progress(record.data, "Updating", "Updating the training job")
    _progress(record.data, current, "Update complete")


def _instance_count(data: dict) -> int:
    return (data.get("ResourceConfig") or {}).get("InstanceCount") or 1


def _instance_type(data: dict) -> str:
    return (data.get("ResourceConfig") or {}).get("InstanceType") or "ml.m5.large"


def _image(data: dict) -> str:
    """The job's image: its own, or its algorithm's (kept when the job was created)."""
    return data["AlgorithmSpecification"].get("TrainingImage") or data["_TrainingImage"]


def _network_isolated(data: dict) -> bool:
    return bool(data.get("EnableNetworkIsolation"))


def _prepare(run: Run, instance, runtime) -> None:
    data, ml = run.data, instance.ml
    hosts = [i.host for i in run.instances]
    itype = _instance_type(data)
    config = ml / "input" / "config"
    (config / "hyperparameters.json").write_text(json.dumps(data.get("HyperParameters") or {}))
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {
                "current_host": instance.host,
                "current_instance_type": itype,
                "current_group_name": "homogeneousCluster",
                "hosts": hosts,
                "instance_groups": [
                    {"instance_group_name": "homogeneousCluster", "instance_type": itype, "hosts": hosts}
                ],
                "network_interface_name": run.placement.interface if run.placement else "eth0",
            }
        )
    )
    input_config = {}
    mode = data["AlgorithmSpecification"].get("TrainingInputMode") or "File"
    for channel in data.get("InputDataConfig") or []:
        source = channel["DataSource"]["S3DataSource"]
        input_config[channel["ChannelName"]] = {
            "TrainingInputMode": channel.get("InputMode") or mode,
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            **({"ContentType": channel["ContentType"]} if channel.get("ContentType") else {}),
        }
        try:
            materialize(
                run.storage,
                source["S3Uri"],
                ml / "input" / "data" / channel["ChannelName"],
                data_type=source.get("S3DataType", "S3Prefix"),
                distribution=source.get("S3DataDistributionType", "FullyReplicated"),
                index=instance.index - 1,
                count=len(run.instances),
                say=instance.say,
                fetches=instance.fetches,
            )
        except InputError as err:
            raise JobFailure(str(err)) from None
    (config / "inputdataconfig.json").write_text(json.dumps(input_config))
    (config / "trainingjobconfig.json").write_text(
        json.dumps({k: v for k, v in data.items() if not k.startswith("_")}, default=str)
    )
    submit = _hyperparameter(data, "sagemaker_submit_directory")
    if submit and _hyperparameter(data, "sagemaker_program"):
        try:
            extract_code(run.storage, str(submit), ml / "code", say=instance.say, fetches=instance.fetches)
        except InputError as err:
            raise JobFailure(str(err)) from None
    if data.get("CheckpointConfig"):
        (ml / "checkpoints").mkdir(exist_ok=True)


def _command(run: Run, runtime) -> list[str]:
    spec = run.data["AlgorithmSpecification"]
    if spec.get("ContainerEntrypoint"):
        return [*spec["ContainerEntrypoint"], *(spec.get("ContainerArguments") or [])]
    if runtime.command and not _hyperparameter(run.data, "sagemaker_program"):
        return [*runtime.command, *(spec.get("ContainerArguments") or [])]
    return ["python3", "-m", "selfmaker.container.training", *(spec.get("ContainerArguments") or [])]


def _environment(run: Run, instance, runtime) -> dict:
    env = {
        "TRAINING_JOB_NAME": run.data["TrainingJobName"],
        "TRAINING_JOB_ARN": run.record.arn,
        # What the training toolkit derives from resourceconfig.json, for a ContainerEntrypoint that has none.
        "SM_HOSTS": json.dumps([i.host for i in run.instances]),
        "SM_CURRENT_HOST": instance.host,
    }
    if runtime.algorithm:
        env["SELFMAKER_ALGORITHM"] = runtime.algorithm
    return env


def _retry_attempts(data: dict) -> int:
    """RetryStrategy.MaximumRetryAttempts: how many times an InternalServerError starts the job again."""
    return (data.get("RetryStrategy") or {}).get("MaximumRetryAttempts") or 0


def _progress(data: dict, status: str, message: str) -> None:
    transitions = data.setdefault("SecondaryStatusTransitions", [])
    if transitions and transitions[-1]["Status"] == status:
        return
    stamp = now()
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = stamp
    transitions.append({"Status": status, "StartTime": stamp, "StatusMessage": message})
    if status in ("Completed", "Failed", "Stopped", "MaxRuntimeExceeded"):
        transitions[-1]["EndTime"] = stamp
    data["SecondaryStatus"] = status


def _started(data: dict, when: float) -> None:
    data["TrainingStartTime"] = when


def _ended(data: dict, when: float) -> None:
    data["TrainingEndTime"] = when
    start = data.get("TrainingStartTime")
    if start is not None:
        seconds = max(1, round(when - start))
        data["TrainingTimeInSeconds"] = seconds
        data["BillableTimeInSeconds"] = seconds * _instance_count(data)


def _output_base(data: dict) -> str:
    return join_uri(data["OutputDataConfig"]["S3OutputPath"], data["TrainingJobName"], "output")


def _uploads(run: Run, instance) -> list[Upload]:
    """What an instance's node uploads itself: its model if it wrote one (the master's; with several writing,
    the last to end wins), and algo-1's output data."""
    base = _output_base(run.data)
    if not base.startswith("s3://"):  # a path of the server's host: its files come back, the server writes them
        return []
    uploads = [Upload(instance.ml / "model", join_uri(base, "model.tar.gz"), archive=True)]
    if instance.index == 1:
        uploads.append(Upload(instance.ml / "output" / "data", join_uri(base, "output.tar.gz"), archive=True))
    return uploads


def _finish(run: Run, outcome: str, reason: str | None):
    fields: dict = {}
    if run.state.get("phase") != "Running":
        return outcome, reason, fields
    first = run.instances[0]
    definitions = metric_definitions(run.backends.settings, run.data)
    final = final_metrics(first.log_path.read_text(errors="replace") if first.log_path.exists() else "", definitions)
    if final:
        fields["FinalMetricDataList"] = final
    if outcome == "Failed":
        return outcome, reason, fields
    base = _output_base(run.data)
    ex = run.job.executor(run.backends)
    # The nodes uploaded what they had (_uploads); a model there must be, if an empty one.
    if not ex.shares_files and base.startswith("s3://"):
        done = {uri for i in run.instances for uri in ex.uploaded(i.state)}
        if join_uri(base, "model.tar.gz") not in done:
            try:
                upload_bytes(run.storage, join_uri(base, "model.tar.gz"), first.files.tar_gz("model"))
            except Exception as err:
                return "Failed", output_error(base, err), fields
        fields["ModelArtifacts"] = {"S3ModelArtifacts": join_uri(base, "model.tar.gz")}
        return outcome, reason, fields
    storage, files = run.storage, first.files  # the job wrote these: read without following its links
    # The master (algo-1) writes the model; an algorithm whose master is another instance (XGBoost's, when
    # ShardedByS3Key left algo-1 without data) has it there: the first instance that wrote one.
    model = next((i.files for i in run.instances if i.files.files("model")), files)
    try:
        upload_bytes(storage, join_uri(base, "model.tar.gz"), model.tar_gz("model"))
        if files.files("output/data"):
            upload_bytes(storage, join_uri(base, "output.tar.gz"), files.tar_gz("output/data"))
    except Exception as err:
        return "Failed", output_error(base, err), fields
    fields["ModelArtifacts"] = {"S3ModelArtifacts": join_uri(base, "model.tar.gz")}
    return outcome, reason, fields


def _component(run: Run) -> dict:
    data = run.data
    inputs = {
        c["ChannelName"]: {
            "Value": c["DataSource"]["S3DataSource"]["S3Uri"],
            **({"MediaType": c["ContentType"]} if c.get("ContentType") else {}),
        }
        for c in data.get("InputDataConfig") or []
    }
    inputs["SageMaker.ImageUri"] = {"Value": _image(data)}
    params = {k: _number(v) for k, v in (data.get("HyperParameters") or {}).items()}
    params.update({"SageMaker.InstanceType": _instance_type(data), "SageMaker.InstanceCount": _instance_count(data)})
    outputs = {}
    if (data.get("ModelArtifacts") or {}).get("S3ModelArtifacts"):
        outputs["SageMaker.ModelArtifact"] = {"Value": data["ModelArtifacts"]["S3ModelArtifacts"]}
    return {
        "parameters": params,
        "input_artifacts": inputs,
        "output_artifacts": outputs,
        "start_time": data.get("TrainingStartTime"),
    }


def _after_end(run: Run) -> None:
    final = run.data.get("FinalMetricDataList") or []
    if final:
        try:
            experiments.record_job_metrics(
                run.ctx,
                run.record.arn,
                [
                    experiment_metrics.Point(name=m["MetricName"], value=m["Value"], timestamp=m["Timestamp"])
                    for m in final
                ],
            )
        except Exception:
            pass


def _hyperparameter(data: dict, name: str):
    raw = (data.get("HyperParameters") or {}).get(name)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _number(value: str):
    try:
        return float(value) if any(c in value for c in ".eE") else int(value)
    except ValueError:
        try:
            return json.loads(value) if isinstance(json.loads(value), str) else value
        except ValueError:
            return value


def metric_definitions(settings, data: dict) -> list[dict]:
    """The job's MetricDefinitions, its algorithm resource's and its built-in algorithm's (matched on its log)."""
    try:
        config = runtimes.load_config(settings.runtimes_config)
        algorithm = runtimes.resolve(_image(data), config).algorithm or ""
    except Exception:
        algorithm = ""
    return [
        *(data["AlgorithmSpecification"].get("MetricDefinitions") or []),
        *(data.get("_AlgorithmMetricDefinitions") or []),
        *ALGORITHM_METRIC_DEFINITIONS.get(algorithm, []),
    ]


def metric_series(log_text: str, pattern: str) -> list[float]:
    """Every value one MetricDefinition's regex captures in ``log_text``, in order (unparsable and non-finite ones
    skipped). The regex is the caller's and the log its code's, run on the server: bounded in time, so a
    catastrophic backtracking one finds nothing rather than hold a server thread for ever."""
    try:
        matches = regex.findall(pattern, log_text, timeout=METRIC_REGEX_SECONDS)
    except (regex.error, TimeoutError):
        return []
    values = []
    for match in matches:
        try:
            value = float(match[0] if isinstance(match, tuple) else match)
        except ValueError:
            continue
        if math.isfinite(value):
            values.append(value)
    return values


def final_metrics(log_text: str, definitions: list[dict]) -> list[dict]:
    """The last value each MetricDefinition's regex captured in the log (SageMaker's FinalMetricDataList)."""
    stamp = now()
    found = []
    for definition in definitions:
        values = metric_series(log_text, definition["Regex"])
        if values:
            found.append({"MetricName": definition["Name"], "Value": values[-1], "Timestamp": stamp})
    return found


TRAINING_JOB = JobKind(
    "TrainingJob",
    "training-job",
    label="training job",
    operations=("Create", "Describe", "List", "Update", "Delete", "Stop"),
    status_member="TrainingJobStatus",
    search_type="TrainingJob",
    on_create=_validate,
    on_update=_update,
    on_delete=_delete,
    present=_present,
    not_found="Requested resource not found.",
    exists="Training job names must be unique within an AWS account and region, and a training job with this "
    "name already exists ({arn})",
    exists_code="ResourceInUse",
    log_group="/aws/sagemaker/TrainingJobs",
    instance_count=_instance_count,
    instance_type=_instance_type,
    image=_image,
    network_isolated=_network_isolated,
    prepare=_prepare,
    command=_command,
    environment=_environment,
    progress=_progress,
    started=_started,
    ended=_ended,
    finish=_finish,
    uploads=_uploads,
    component=_component,
    after_end=_after_end,
    retry_attempts=_retry_attempts,
    on_cluster=True,
).register()
