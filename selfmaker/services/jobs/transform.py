"""Batch transform jobs: CreateTransformJob, DescribeTransformJob, ListTransformJobs, StopTransformJob.

Each instance (algo-1..N) serves the job's Model with SelfMaker's model server
(:mod:`selfmaker.engines.model_server`) in a sandbox, on a Unix socket, with
the batch environment the real service sets (SAGEMAKER_BATCH, ..._MAX_PAYLOAD_IN_MB,
..._BATCH_STRATEGY, ..._MAX_CONCURRENT_TRANSFORMS, then the job's Environment).

A driver thread in the server process feeds each instance: it waits for
/ping, reads its share of the input objects (every N-th in key order, as the
service spreads files over instances), splits, filters, batches, POSTs them
with MaxConcurrentTransforms requests in flight, and writes
``<S3OutputPath>/<input key relative to the prefix>.out``. Each finished file
is noted in the instance's ``transformed`` file, so a restarted server resumes
with the files not yet written. When its inputs are done the driver notes it
(``done``) and stops the model server, which ends the instance; a data or
model error is noted (``failure``) and ends it too, and the job fails with it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ...engines import model_server
from ...engines.executor import ExitStatus, Mount
from ...engines.reconciler import kick
from ...server.errors import validation
from .. import catalog
from . import batch
from .channels import check_uri
from .data import InputError, JobStorage, Source, join_uri, output_error, read, sources, upload_bytes
from .lifecycle import Instance, JobFailure, JobKind, Run, describe, executor

log = logging.getLogger("selfmaker.jobs.transform")

STARTUP_SECONDS = 600  # how long the model server may take to answer /ping (requirements.txt installs included)
PING_INTERVAL = 0.05
MAX_TOTAL_PAYLOAD_MB = 100  # MaxConcurrentTransforms * MaxPayloadInMB, as the service limits it
DEFAULTS = {"MaxConcurrentTransforms": 1, "MaxPayloadInMB": 6, "BatchStrategy": "MultiRecord"}
STRATEGY_ENV = {"SingleRecord": "SINGLE_RECORD", "MultiRecord": "MULTI_RECORD"}
STRATEGY_MEMBER = {v: k for k, v in STRATEGY_ENV.items()}

# Driver files in each instance's directory (outside /opt/ml: the sandbox never sees them).
TRANSFORMED, DONE, FAILURE = "transformed", "done", "failure"


class TransformFailure(Exception):
    """The job cannot go on; the message is its FailureReason."""


class Halted(Exception):
    """The instance ended under the driver (the job was stopped, or the model server died)."""


# -- Create ---------------------------------------------------------------------------------------------------------


def _validate(ctx, params: dict, data: dict) -> None:
    model = catalog.MODEL.load(ctx, params["ModelName"])
    try:
        container = model_server.container_of(model.data)
    except model_server.ModelDataError as err:
        raise validation(str(err)) from None
    if params.get("DataCaptureConfig"):
        raise validation("DataCaptureConfig is not supported by SelfMaker for batch transform jobs yet.")
    transform_input = params["TransformInput"]
    source = transform_input["DataSource"].get("S3DataSource")
    if source is None:
        raise validation("TransformInput.DataSource: only S3DataSource inputs are supported by SelfMaker.")
    if source.get("S3DataType", "S3Prefix") not in ("S3Prefix", "ManifestFile"):
        raise validation(
            f"TransformInput: S3DataType {source['S3DataType']} is not supported by SelfMaker "
            "(it serves S3Prefix and ManifestFile)."
        )
    check_uri(ctx, source["S3Uri"], "TransformInput.DataSource.S3DataSource.S3Uri")
    output = params["TransformOutput"]
    check_uri(ctx, output["S3OutputPath"], "TransformOutput.S3OutputPath")
    _check_model_data(ctx, params["ModelName"], container)
    if output.get("KmsKeyId"):
        raise validation(
            "TransformOutput.KmsKeyId is not supported by SelfMaker: leave it out "
            "(SelfMaker's S3 encrypts with its default key)."
        )
    try:
        batch.split_records(b"", transform_input.get("SplitType"))
        processing = params.get("DataProcessing") or {}
        batch.check_path(processing.get("InputFilter"), "DataProcessing.InputFilter")
        batch.check_path(processing.get("OutputFilter"), "DataProcessing.OutputFilter")
    except batch.Unsupported as err:
        raise validation(str(err)) from None
    payload = params.get("MaxPayloadInMB")
    if payload is not None and payload > MAX_TOTAL_PAYLOAD_MB:
        raise validation(f"MaxPayloadInMB ({payload}) cannot be greater than {MAX_TOTAL_PAYLOAD_MB} MB.")
    if (
        payload
        and params.get("MaxConcurrentTransforms")
        and payload * params["MaxConcurrentTransforms"] > MAX_TOTAL_PAYLOAD_MB
    ):
        raise validation(
            f"MaxConcurrentTransforms * MaxPayloadInMB cannot be greater than {MAX_TOTAL_PAYLOAD_MB} "
            f"MB ({params['MaxConcurrentTransforms']} * {payload})."
        )
    # The job serves the model as it is now: a later DeleteModel does not change a running job.
    data["_model"] = {
        "Container": container,
        "EnableNetworkIsolation": bool(model.data.get("EnableNetworkIsolation")),
        "ModelArn": model.arn,
    }
    data["TransformJobStatus"] = "InProgress"


def _check_model_data(ctx, model_name: str, container: dict) -> None:
    """The model's data and code are read by the job: they must be in the job's account's buckets too."""
    source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
    submit = (container.get("Environment") or {}).get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    for member, uri in (
        ("ModelDataUrl", container.get("ModelDataUrl")),
        ("ModelDataSource.S3DataSource.S3Uri", source.get("S3Uri")),
        ("Environment.SAGEMAKER_SUBMIT_DIRECTORY", submit if submit.startswith("s3://") else None),
    ):
        if uri:
            check_uri(ctx, uri, f"Model {model_name}: {member}")


# -- what each instance does ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The job's batch settings, with the defaults filled in."""

    split_type: str
    strategy: str  # SingleRecord | MultiRecord
    max_payload_mb: int
    concurrency: int
    content_type: str | None
    accept: str | None
    input_filter: str | None
    output_filter: str | None
    join: bool
    assemble_with: str | None
    gzip: bool
    timeout: float
    retries: int

    @classmethod
    def of(cls, data: dict, served: dict | None = None) -> Plan:
        """``served``: the model server's /execution-parameters, used where the request sets nothing."""

        def setting(member: str):
            if data.get(member) is not None:
                return data[member]
            value = (served or {}).get(member)
            if member == "BatchStrategy" and value:
                value = STRATEGY_MEMBER.get(value, value)
            return value if value is not None else DEFAULTS[member]

        transform_input, output = data["TransformInput"], data["TransformOutput"]
        processing = data.get("DataProcessing") or {}
        client = data.get("ModelClientConfig") or {}
        split_type = transform_input.get("SplitType") or "None"
        return cls(
            split_type=split_type,
            strategy=setting("BatchStrategy") if split_type != "None" else "SingleRecord",
            max_payload_mb=setting("MaxPayloadInMB"),
            concurrency=max(1, setting("MaxConcurrentTransforms")),
            content_type=transform_input.get("ContentType"),
            accept=output.get("Accept"),
            input_filter=processing.get("InputFilter"),
            output_filter=processing.get("OutputFilter"),
            join=processing.get("JoinSource") == "Input",
            assemble_with=output.get("AssembleWith"),
            gzip=transform_input.get("CompressionType") == "Gzip",
            timeout=float(client.get("InvocationsTimeoutInSeconds") or 600),
            retries=int(client["InvocationsMaxRetries"]) if client.get("InvocationsMaxRetries") is not None else 3,
        )

    @property
    def per_record(self) -> bool:
        """Whether each response must be split into one output per record (to join or filter it)."""
        return self.join or bool(self.output_filter and self.output_filter.strip() != "$")


@dataclass
class Pending:
    """One input file in flight: its records and the requests of its batches."""

    source: Source
    relative: str
    records: list[bytes]
    groups: list[list[int]]
    responses: list[Future]


class Driver:
    """Feeds one instance's model server its share of the input, from a thread of the server process."""

    def __init__(self, job: JobKind, backends, record, instance: Instance):
        self.job, self.backends, self.record, self.instance = job, backends, record, instance
        self.data = record.data
        self.storage = JobStorage.of(backends, record.account_id)
        self.socket = model_server.socket_path(instance.root)
        self._local = threading.local()

    # -- the thread ------------------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            served = self._wait_until_ready()
            self._transform_all(Plan.of(self.data, served))
            (self.instance.root / DONE).touch()
        except Halted:
            return  # the lifecycle reports why the instance ended
        except TransformFailure as failure:
            self._note_failure(str(failure))
        except Exception as err:  # a bug must not leave the job waiting forever
            log.exception("the transform driver of %s failed", self.instance.root)
            self._note_failure(f"InternalServerError: SelfMaker could not run the transform: {describe(err)}")
        self._end_instance()

    def _note_failure(self, reason: str) -> None:
        self.say(reason)
        (self.instance.root / FAILURE).write_text(reason)

    def _end_instance(self) -> None:
        executor(self.backends).stop(self.instance.state, self.backends.settings.stop_grace_seconds)
        kick(self.backends, self.record.arn)

    def say(self, message: str) -> None:
        """A line of the job's log, as the service's own (data-log) lines read."""
        self.instance.say(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}:[sagemaker logs]: {message}")

    def _ended(self) -> bool:
        return executor(self.backends).poll(self.instance.state) is not None

    def _wait_until_ready(self) -> dict | None:
        """Wait for /ping; return the server's /execution-parameters (None if it has none)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while not model_server.ping(self.socket):
            if self._ended():
                raise Halted()
            if time.monotonic() > deadline:
                raise TransformFailure(
                    f"ClientError: the model server of {self.instance.host} did not answer "
                    f"/ping within {STARTUP_SECONDS} s; see the job's logs"
                )
            time.sleep(PING_INTERVAL)
        connection = model_server.UnixConnection(self.socket, timeout=10)
        try:
            connection.request("GET", "/execution-parameters")
            response = connection.getresponse()
            body = response.read()
            return json.loads(body) if response.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            connection.close()

    # -- files ----------------------------------------------------------------------------------------------------

    def _inputs(self) -> list[tuple[Source, str]]:
        """This instance's input objects, with each one's path relative to the input prefix (its output name)."""
        source = self.data["TransformInput"]["DataSource"]["S3DataSource"]
        data_type = source.get("S3DataType", "S3Prefix")
        try:
            found = sources(
                self.storage,
                source["S3Uri"],
                data_type,
                self.instance.index - 1,
                self.job.instance_count(self.data),
                say=self.instance.say,
            )
        except InputError as err:
            raise TransformFailure(str(err)) from None
        if data_type == "ManifestFile" or not source["S3Uri"].startswith("s3://"):
            return [(s, s.relative) for s in found]
        prefix = source["S3Uri"][len("s3://") :].partition("/")[2]
        return [(s, _output_name(prefix, s.key)) for s in found]

    def _transformed(self) -> set[str]:
        try:
            return {json.loads(line) for line in (self.instance.root / TRANSFORMED).read_text().splitlines() if line}
        except FileNotFoundError:
            return set()

    def _transform_all(self, plan: Plan) -> None:
        done = self._transformed()
        todo = [(s, r) for s, r in self._inputs() if r not in done]
        self.say(
            f"MaxConcurrentTransforms={plan.concurrency}, MaxPayloadInMB={plan.max_payload_mb}, "
            f"BatchStrategy={STRATEGY_ENV[plan.strategy]}"
        )
        pool = ThreadPoolExecutor(plan.concurrency, thread_name_prefix=f"transform-{self.instance.host}")
        window: deque[Pending] = deque()  # files in flight, finished in order
        try:
            for source, relative in todo:
                window.append(self._submit(pool, plan, source, relative))
                while len(window) > plan.concurrency:
                    self._finish(plan, window.popleft())
            while window:
                self._finish(plan, window.popleft())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, pool: ThreadPoolExecutor, plan: Plan, source: Source, relative: str) -> Pending:
        uri = source.uri
        try:
            raw = read(self.storage, source)
            if plan.gzip:
                raw = gzip.decompress(raw)
            records = batch.split_records(raw, plan.split_type)
            inputs = [batch.filter_record(r, plan.input_filter, plan.content_type) for r in records]
            groups = batch.batches(inputs, plan.strategy, plan.max_payload_mb)
        except InputError as err:
            raise TransformFailure(str(err)) from None
        except (OSError, EOFError) as err:  # gzip's errors
            raise TransformFailure(f"ClientError: {uri} is not a gzip file: {err}") from None
        except batch.TransformDataError as err:
            raise TransformFailure(f"ClientError: {uri}: {err}") from None
        payloads = [
            inputs[g[0]] if plan.split_type == "None" else batch.join_request([inputs[i] for i in g]) for g in groups
        ]
        return Pending(
            source, relative, records, groups, [pool.submit(self._invoke, plan, uri, payload) for payload in payloads]
        )

    def _finish(self, plan: Plan, pending: Pending) -> None:
        uri = pending.source.uri
        outputs: list[bytes] = []
        try:
            for group, response in zip(pending.groups, pending.responses):
                body = response.result()
                if not plan.per_record:
                    outputs.append(body)
                    continue
                for index, output in zip(group, batch.split_response(body, len(group))):
                    if plan.join:
                        output = batch.join_input(pending.records[index], output, plan.content_type)
                    outputs.append(
                        batch.filter_record(output, plan.output_filter, plan.content_type if plan.join else plan.accept)
                    )
        except batch.TransformDataError as err:
            raise TransformFailure(f"ClientError: {uri}: {err}") from None
        target = join_uri(self.data["TransformOutput"]["S3OutputPath"], pending.relative + ".out")
        try:
            upload_bytes(self.storage, target, batch.assemble(outputs, plan.assemble_with))
        except Exception as err:
            raise TransformFailure(output_error(target, err)) from None
        with open(self.instance.root / TRANSFORMED, "a") as progress:
            progress.write(json.dumps(pending.relative) + "\n")

    # -- requests ---------------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None, headers: dict, timeout: float) -> tuple[int, bytes]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = model_server.UnixConnection(self.socket, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except BaseException:
            connection.close()
            self._local.connection = None
            raise

    def _invoke(self, plan: Plan, uri: str, payload: bytes) -> bytes:
        headers = {"Content-Type": plan.content_type or "application/octet-stream"}
        if plan.accept:
            headers["Accept"] = plan.accept
        problem = ""
        for _ in range(plan.retries + 1):
            try:
                status, body = self._request("POST", "/invocations", payload, headers, plan.timeout)
            except TimeoutError:
                problem = f"the model did not answer within InvocationsTimeoutInSeconds ({plan.timeout:g} s)"
                continue
            except (OSError, http.client.HTTPException) as err:
                if self._ended():
                    raise Halted() from None
                problem = f"the model server closed the connection ({err})"
                continue
            if status == 200:
                return body
            message = body.decode("utf-8", "replace")
            self.say(f"{uri}: ClientError: {status}")
            self.say(f"{uri}: Message:")
            for line in message.splitlines()[:50]:
                self.say(f"{uri}: {line}")
            problem = f"the model answered {status}: {message.strip().splitlines()[0] if message.strip() else ''}"
            if status < 500:
                break  # the request itself is wrong: trying again cannot help
        raise TransformFailure(f"ClientError: See job logs for more details. {uri}: {problem}")


def _output_name(prefix: str, key: str) -> str:
    """An input key's path under S3OutputPath (before ``.out``): relative to the input prefix; an object named
    whole by the prefix keeps its name; a prefix ending inside a name counts from its folder."""
    rest = key[len(prefix) :]
    if not prefix or prefix.endswith("/") or rest.startswith("/"):
        return rest.lstrip("/")
    if not rest:
        return key.rpartition("/")[2]
    return key[len(prefix.rpartition("/")[0]) :].lstrip("/")


_drivers: dict[Path, threading.Thread] = {}
_drivers_lock = threading.Lock()


def _instance_count(data: dict) -> int:
    return data["TransformResources"].get("InstanceCount") or 1


def _instance_type(data: dict) -> str:
    return data["TransformResources"]["InstanceType"]


def _image(data: dict) -> str:
    return data["_model"]["Container"].get("Image") or ""


def _no_max_runtime(data: dict) -> int | None:
    return None


def _network_isolated(data: dict) -> bool:
    return data["_model"]["EnableNetworkIsolation"]


def _prepare(run: Run, instance: Instance, runtime) -> None:
    for name in (TRANSFORMED, DONE, FAILURE):
        (instance.root / name).unlink(missing_ok=True)
    try:
        model_server.prepare(run.storage.objects, run.data["_model"]["Container"], instance.ml)
    except model_server.ModelDataError as err:
        raise JobFailure(f"ClientError: {err}") from None


def _command(run: Run, runtime) -> list[str]:
    return list(model_server.COMMAND)


def _environment(run: Run, instance: Instance, runtime) -> dict:
    data = run.data
    env = model_server.environment(data["_model"]["Container"])
    env["SAGEMAKER_BATCH"] = "true"
    for member, name in (
        ("MaxPayloadInMB", "SAGEMAKER_MAX_PAYLOAD_IN_MB"),
        ("MaxConcurrentTransforms", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"),
    ):
        if data.get(member) is not None:
            env[name] = str(data[member])
    if data.get("BatchStrategy"):
        env["SAGEMAKER_BATCH_STRATEGY"] = STRATEGY_ENV[data["BatchStrategy"]]
    return env


def _mounts(run: Run, instance: Instance) -> tuple[Mount, ...]:
    return (model_server.socket_mount(instance.root),)


def _while_running(run: Run) -> float | None:
    for instance in run.instances:
        if (instance.root / DONE).exists() or (instance.root / FAILURE).exists():
            if executor(run.backends).poll(instance.state) is None:  # a crash came before the stop
                executor(run.backends).stop(instance.state, run.backends.settings.stop_grace_seconds)
            continue
        with _drivers_lock:
            thread = _drivers.get(instance.root)
            if thread is not None and thread.is_alive():
                continue
            driver = Driver(run.job, run.backends, run.record, instance)
            thread = _drivers[instance.root] = threading.Thread(
                target=driver.run, name=f"transform-{run.name}-{instance.host}", daemon=True
            )
        thread.start()
    return None  # the instances' ends kick the reconciler


def _exit_status(run: Run, instance: Instance, status: ExitStatus | None) -> ExitStatus | None:
    if status is None:
        return None
    if (instance.root / FAILURE).exists():
        return ExitStatus(1)
    if (instance.root / DONE).exists():
        return ExitStatus(0)  # the driver ended the model server once every input was transformed
    return status


def _failure_reason(run: Run, instance: Instance, status: ExitStatus) -> str:
    failure = instance.root / FAILURE
    if failure.exists():
        return failure.read_text()
    return (
        f"ClientError: the model server of {instance.host} exited (code {status.code}) before the "
        f"transform was done; see the job's logs in {run.job.log_group}"
    )


def _started(data: dict, when: float) -> None:
    data["TransformStartTime"] = when


def _ended(data: dict, when: float) -> None:
    data["TransformEndTime"] = when


def _component(run: Run) -> dict:
    data = run.data
    inputs = {
        "input": {
            "Value": data["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"],
            **(
                {"MediaType": data["TransformInput"]["ContentType"]}
                if data["TransformInput"].get("ContentType")
                else {}
            ),
        }
    }
    inputs["SageMaker.ImageUri"] = {"Value": _image(data)}
    container = data["_model"]["Container"]
    if container.get("ModelDataUrl"):
        inputs["SageMaker.ModelArtifact"] = {"Value": container["ModelDataUrl"]}
    outputs = {}
    if data["TransformJobStatus"] == "Completed":
        outputs["output"] = {
            "Value": data["TransformOutput"]["S3OutputPath"],
            **({"MediaType": data["TransformOutput"]["Accept"]} if data["TransformOutput"].get("Accept") else {}),
        }
    return {
        "parameters": {
            "SageMaker.InstanceType": _instance_type(data),
            "SageMaker.InstanceCount": _instance_count(data),
        },
        "input_artifacts": inputs,
        "output_artifacts": outputs,
        "start_time": data.get("TransformStartTime"),
    }


def _summary(record) -> dict:
    return {
        k: record.data[k]
        for k in (
            "TransformJobName",
            "TransformJobArn",
            "CreationTime",
            "TransformEndTime",
            "LastModifiedTime",
            "TransformJobStatus",
            "FailureReason",
        )
        if k in record.data
    }


TRANSFORM_JOB = JobKind(
    "TransformJob",
    "transform-job",
    label="transform job",
    operations=("Create", "Describe", "List", "Stop"),
    status_member="TransformJobStatus",
    on_create=_validate,
    summarize=_summary,
    not_found="Could not find requested job with name {name}",
    exists="Job names must be unique within an AWS account and region, and a transform job with this name "
    "already exists ({arn})",
    exists_code="ResourceInUse",
    log_group="/aws/sagemaker/TransformJobs",
    output_artifact_type="DataSet",
    instance_count=_instance_count,
    instance_type=_instance_type,
    image=_image,
    max_runtime=_no_max_runtime,
    network_isolated=_network_isolated,
    prepare=_prepare,
    command=_command,
    environment=_environment,
    mounts=_mounts,
    while_running=_while_running,
    exit_status=_exit_status,
    failure_reason=_failure_reason,
    started=_started,
    ended=_ended,
    component=_component,
).register()
