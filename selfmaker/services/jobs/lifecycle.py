"""What every job kind shares: its directory, its instances in sandboxes, its logs and its state machine.

A job record moves through phases kept in ``data["_run"]`` (the serializer
never returns it): ``Starting`` (runtime, inputs, launch) -> ``Running``
(instances followed by watchers that kick the reconciler the moment one ends)
-> a terminal status, written only after the logs are shipped and every
output is uploaded, so a job reported Completed never has half its output.

A server killed at any point resumes from the phase: ``Starting`` starts over
(any instance it had launched is stopped first), ``Running`` re-attaches to
the instances, which kept running on their own, and a job whose instances
vanished without an exit status fails with that reason.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from functools import partial
from pathlib import Path

from ...backends import Backends
from ...engines import instance_types, reconciler, runtimes, sandbox
from ...engines.background_builds import background_builds
from ...engines.executor import (
    ExecutorUnavailable,
    ExitStatus,
    Fetch,
    InstanceSpec,
    Mount,
    Placement,
    StoreAccess,
    Upload,
    open_executor,
)
from ...engines.leases import leases
from ...engines.reconciler import Controller, kick
from ...server.operations import Context
from ...store.fencing import LeaseLost
from ...store.resources import Record, now
from .. import experiments
from ..kinds import Kind
from . import credentials, logship, provenance, takeover
from .confined import ConfinedDir
from .data import JobStorage

log = logging.getLogger("selfmaker.jobs")

ACTIVE = frozenset({"InProgress", "Stopping"})
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
# While its runtime builds a job is looked at again after this long, if the build's end did not wake it first.
BUILD_CHECK = 30.0
REASON_LIMIT = 1024  # characters: AWS truncates FailureReason (and ExitMessage) there

# What every job's instances get unless the job's Environment says otherwise. OpenMP's idle threads (XGBoost,
# scikit-learn, PyTorch on CPU) spin by default, waiting for work; on a host whose cores several jobs and the
# server share, a spinning thread burns the core the thread it waits for needs (six 30-round XGBoost trainings
# on two loaded cores: 34-66 s and 17-22 s of CPU spinning, 3-7 s and 3 s passive; docs/benchmarks.md).
SHARED_HOST_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}

_watched: set[Path] = set()
_watched_lock = threading.Lock()


# Artifact types of a component's artifacts by name; the others are the job kind's default.
_NAMED_ARTIFACT_TYPES = {"SageMaker.ImageUri": "Image", "SageMaker.ModelArtifact": "Model"}


def _artifact_types(artifacts: dict, default: str) -> dict[str, str]:
    """A component's artifacts as lineage wants them: URI -> artifact type (the image is an Image)."""
    return {a["Value"]: _NAMED_ARTIFACT_TYPES.get(name, default) for name, a in artifacts.items() if a.get("Value")}


class JobFailure(Exception):
    """The job cannot go on; the message is its FailureReason."""


def describe(err: Exception) -> str:
    """An unexpected error in words a caller may see: an OSError's text names host paths, so only its cause."""
    if isinstance(err, OSError):
        return f"{type(err).__name__}: {err.strerror or 'operating system error'}"
    return str(err)


def context(backends: Backends, record: Record) -> Context:
    return Context(backends=backends, account_id=record.account_id, region=record.region, service="sagemaker")


def executor(backends: Backends):
    """The executor of what always runs on this server's machine (notebooks, transform jobs): the configured
    one, or the local one when jobs and endpoints go to a cluster."""
    setting = backends.settings.executor
    return backends.shared("executor", lambda: open_executor("local" if setting == "ray" else setting))


def cluster_executor(backends: Backends):
    """Where training and processing instances and endpoint instances run: the configured executor (a Ray
    cluster, say)."""
    settings = backends.settings
    if settings.executor != "ray":
        return executor(backends)
    return backends.shared(
        "cluster-executor",
        lambda: open_executor(
            "ray",
            settings.ray_address,
            settings.ray_server_url,
            local_url=f"http://127.0.0.1:{settings.port}",
            home=str(settings.data_dir),
        ),
    )


@dataclass
class Instance:
    index: int  # 1-based, as in algo-1
    root: Path
    # On an executor that does not share files: the S3 objects prepare() chose for the instance, which its
    # node fetches itself (data.py); None: prepare() copies them here.
    fetches: list[Fetch] | None = None

    @property
    def host(self) -> str:
        return f"algo-{self.index}"

    @property
    def ml(self) -> Path:  # bound at /opt/ml
        return self.root / "ml"

    @property
    def state(self) -> Path:  # the executor's files
        return self.root / "state"

    @property
    def log_path(self) -> Path:
        return self.root / "output.log"

    @property
    def site(self) -> Path:  # the job's own pip installs (requirements.txt), never the cached runtime
        return self.root / "site"

    def say(self, message: str) -> None:
        """A line in the instance's log (and so in CloudWatch), e.g. the runtime being built."""
        with open(self.log_path, "a") as f:
            f.write(message.rstrip("\n") + "\n")

    @property
    def files(self) -> ConfinedDir:
        """The instance's /opt/ml as the server may read it: the job wrote it, so no link is ever followed."""
        return ConfinedDir(self.ml, "/opt/ml", self.say)


def hosts_file(instances: list[Instance], placement: Placement) -> str:
    """Every instance's /etc/hosts: ``algo-<i>`` at the address the executor placed it on (SageMaker's
    instances find each other by these names), localhost as usual."""
    lines = ["127.0.0.1 localhost", "::1 localhost"]
    lines += [f"{address} {i.host}" for i, address in zip(instances, placement.addresses)]
    return "\n".join(lines) + "\n"


class Run:
    """One reconcile step's view of a job: its record, directory and instances."""

    placement: Placement | None = None  # where the instances run, once the executor has placed them

    def __init__(self, job: JobKind, backends: Backends, record: Record):
        self.job, self.backends, self.record = job, backends, record
        settings = backends.settings
        self.dir = settings.data_dir / "jobs" / record.account_id / record.region / job.arn_type / record.name.lower()
        self.instances = [Instance(i, self.dir / f"algo-{i}") for i in range(1, job.instance_count(record.data) + 1)]

    @property
    def data(self) -> dict:
        return self.record.data

    @property
    def state(self) -> dict:
        return self.record.data.setdefault("_run", {})

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def ctx(self) -> Context:
        return context(self.backends, self.record)

    @property
    def storage(self) -> JobStorage:
        """The only way the job's data moves: its account's buckets, and the host paths the operator allows."""
        return JobStorage.of(self.backends, self.record.account_id)

    def without_host_paths(self, text: str) -> str:
        """A reason as the caller may see it: the instance directories named as /opt/ml, no other host path."""
        settings = self.backends.settings
        known = [
            *((str(i.ml), "/opt/ml") for i in self.instances),
            (str(self.dir), "<the job's directory>"),
            (str(settings.runtimes_dir), "<runtimes>"),
            (str(settings.data_dir), "<data directory>"),
            *([(settings.package_index, "<package index>")] if settings.package_index else []),
        ]
        for host, shown in sorted(known, key=lambda pair: -len(pair[0])):
            text = text.replace(host, shown)
        return text

    def stream(self, instance: Instance) -> str:
        return f"{self.record.data[self.job.name_member]}/{instance.host}-{int(self.record.data['CreationTime'])}"

    def update(self, mutate) -> None:
        """Apply ``mutate(data)`` to the stored record as it is now (a Stop may have landed meanwhile)."""

        def change(fresh: Record, _conn) -> None:
            mutate(fresh.data)
            fresh.status = fresh.data[self.job.status_member]

        self.record = self.backends.resources.mutate(change, arn=self.record.arn) or self.record

    # -- logs --------------------------------------------------------------------------

    def ship_logs(self) -> None:
        owner = leases(self.backends)
        noting = self.job.executor(self.backends).adoptable and not owner.local
        arn = self.record.arn
        for instance in self.instances:
            instance.root.mkdir(parents=True, exist_ok=True)
            instance.log_path.touch()
            logship.follow(
                self.backends.store,
                self.record.account_id,
                self.record.region,
                self.job.log_group,
                self.stream(instance),
                instance.log_path,
                on_shipped=partial(takeover.note_shipped, self.job, self.backends, arn, instance) if noting else None,
                ships=(lambda: owner.holds(arn) and owner.valid()) if noting else None,
            )

    def finish_logs(self) -> None:
        for instance in self.instances:
            takeover.forget(instance.log_path)
            logship.finish(
                instance.log_path,
                self.backends.store,
                self.record.account_id,
                self.record.region,
                self.job.log_group,
                self.stream(instance),
            )


def _no_preparation(run: Run, instance: Instance, runtime: runtimes.Runtime) -> None:
    return None


def _no_environment(run: Run, instance: Instance, runtime: runtimes.Runtime) -> dict:
    return {}


def _no_mounts(run: Run, instance: Instance) -> tuple[Mount, ...]:
    return ()


def _no_uploads(run: Run, instance: Instance) -> list[Upload]:
    return []


def _exit_as_is(run: Run, instance: Instance, status: ExitStatus | None) -> ExitStatus | None:
    return status


def _nothing_while_running(run: Run) -> float | None:
    return None


def _nothing_to_finish(run: Run, outcome: str, reason: str | None) -> tuple[str, str | None, dict]:
    return outcome, reason, {}


def _no_progress(data: dict, status: str, message: str) -> None:
    return None


def _nothing_after_end(run: Run) -> None:
    return None


def _no_retries(data: dict) -> int:
    return 0


def retryable(reason: str | None) -> bool:
    """Whether a failure is SageMaker's own (an InternalServerError), which a RetryStrategy retries and a
    tuning job counts as a RetryableError; any other failure (ClientError, AlgorithmError) is the user's."""
    return reason is not None and reason.startswith("InternalServerError")


def stopping_condition(data: dict) -> int | None:
    """MaxRuntimeInSeconds of the job's StoppingCondition (None: no limit)."""
    return (data.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")


def algorithm_failure(run: Run, instance: Instance, status: ExitStatus) -> str:
    """The FailureReason of an instance that exited non-zero: the job's own output/failure, else its exit code."""
    text = instance.files.read_text("output/failure", REASON_LIMIT).strip()
    if text:  # built-in algorithms classify their own failures (ClientError: the user's to fix)
        return (text if text.startswith(("ClientError:", "AlgorithmError:")) else f"AlgorithmError: {text}")[
            :REASON_LIMIT
        ]
    return f"AlgorithmError: See job logs for more information (exit code {status.code} on {instance.host})"


@dataclass
class JobKind(Kind):
    """A Kind whose records are jobs: Create starts one, a reconciler runs it, Stop stops it.

    A job kind is one declaration: the Kind's fields and hooks, plus the job hooks
    below (the image, the instance count and type, how an instance's /opt/ml is
    prepared, its command, what happens to its outputs). ``register()`` registers
    its operations (Stop<Name> among them) and its reconciler controller.
    Hooks given the job's :class:`Run` reach the kind itself as ``run.job``.
    """

    operations: tuple[str, ...] = ("Create", "Describe", "List", "Stop")
    _: KW_ONLY
    log_group: str  # the CloudWatch log group of its instances' logs
    instance_count: Callable[[dict], int]  # (data)
    instance_type: Callable[[dict], str]  # (data)
    image: Callable[[dict], str]  # (data): the image URI, which names the runtime
    network_isolated: Callable[[dict], bool]  # (data)
    command: Callable[[Run, runtimes.Runtime], list[str]]  # what every instance runs
    started: Callable[[dict, float], None]  # (data, when): record the start (e.g. TrainingStartTime)
    ended: Callable[[dict, float], None]  # (data, when): record the end, in the terminal write
    # (run) -> trial component fields (parameters, input_artifacts, output_artifacts, start_time) for experiments
    component: Callable[[Run], dict]
    # Fill the instance's /opt/ml (config files, inputs, code) before it starts.
    prepare: Callable[[Run, Instance, runtimes.Runtime], None] = _no_preparation
    environment: Callable[[Run, Instance, runtimes.Runtime], dict] = _no_environment  # besides the job's own
    # Host paths an instance needs besides its /opt/ml (a model server's socket directory).
    mounts: Callable[[Run, Instance], tuple[Mount, ...]] = _no_mounts
    # On an executor that does not share files: the outputs the instance's node uploads itself once it ended
    # well; finish() then only records them (Executor.uploaded).
    uploads: Callable[[Run, Instance], list[Upload]] = _no_uploads
    # How an instance's end counts for the job (an instance the job ended itself may count as done).
    exit_status: Callable[[Run, Instance, ExitStatus | None], ExitStatus | None] = _exit_as_is
    # The FailureReason of an instance that exited with a non-zero code.
    failure_reason: Callable[[Run, Instance, ExitStatus], str] = algorithm_failure
    # Work done while instances run (continuous uploads); seconds until it wants to run again.
    while_running: Callable[[Run], float | None] = _nothing_while_running
    # Upload outputs for a job ending with ``outcome``; return (status, failure reason, data to set).
    finish: Callable[[Run, str, str | None], tuple[str, str | None, dict]] = _nothing_to_finish
    progress: Callable[[dict, str, str], None] = _no_progress  # (data, status, message): training's transitions
    max_runtime: Callable[[dict], int | None] = stopping_condition  # seconds, None: no limit
    after_end: Callable[[Run], None] = _nothing_after_end  # after the terminal status is recorded (metrics)
    # How many times a job failing with an InternalServerError starts again (training's RetryStrategy).
    retry_attempts: Callable[[dict], int] = _no_retries
    # Its instances run on the configured executor, a cluster's nodes too (ray); False: on this server's
    # machine always (a transform job's model server is reached over a Unix socket).
    on_cluster: bool = False
    output_artifact_type: str = "Model"  # what lineage calls the job's outputs (a transform's are a DataSet)
    records_experiments: bool = True  # a trial component and lineage for each job (not for compilation jobs)

    def executor(self, backends: Backends):
        return cluster_executor(backends) if self.on_cluster else executor(backends)

    def register(self) -> JobKind:
        super().register()
        reconciler.register(Controller(self.name, ACTIVE, self.reconcile))
        return self

    # -- Create, Stop ---------------------------------------------------------------------------------

    def create(self, ctx: Context, params: dict) -> dict:
        experiments.check_experiment_config(ctx, params.get("ExperimentConfig"))
        result = super().create(ctx, params)
        arn = result[self.arn_member]
        if not self.records_experiments:
            kick(ctx.backends, arn)
            return result
        try:
            experiments.record_job(
                ctx, arn, status="InProgress", start_time=now(), experiment_config=params.get("ExperimentConfig")
            )
        except Exception:  # the job runs even if its experiment record cannot be written
            log.exception("could not record %s in experiments", arn)
        kick(ctx.backends, arn)
        return result

    def stop(self, ctx: Context, params: dict, *, message: str = "Stopping the job") -> dict:
        """Stop<Name>; ``message`` is the Stopping transition's (a tuning job's early stop says why)."""
        with ctx.store.write() as conn:
            record = self.load(ctx, params[self.name_member], conn=conn, lock=True)
            status = record.data[self.status_member]
            if status in TERMINAL:
                from ...server.errors import validation

                raise validation(f"The request was rejected because the {self.label} is in status {status}.")
            if status != "Stopping":
                record.data[self.status_member] = record.status = "Stopping"
                self.progress(record.data, "Stopping", message)
                record.data["LastModifiedTime"] = now()
                ctx.backends.resources.save(record, conn=conn)
        kick(ctx.backends, record.arn)
        return {}

    def job_dir(self, ctx: Context, record: Record) -> Path:
        return Run(self, ctx.backends, record).dir

    # -- the state machine -----------------------------------------------------------------------

    def reconcile(self, backends: Backends, record: Record) -> float | None:
        run = Run(self, backends, record)
        try:
            node = run.state.get("node")
            if node and node != leases(backends).node and not self._adopt(run, node):  # its server is gone
                return self._lost_with(run, node)
            if record.status == "Stopping":
                return self._stop(run)
            if run.state.get("phase", "Starting") == "Starting" and not self._start(run):
                return BUILD_CHECK  # its runtime builds; the build runs this step again when it ends
            return self._follow(run)
        except JobFailure as failure:
            self._stop_instances(run)
            self._end(run, "Failed", str(failure))
        except LeaseLost:  # another server drives the job now (it was paused): end what it started, give up
            self._stop_instances(run, lease_lost=True)
            raise
        except Exception as err:  # a bug must not leave the job InProgress forever
            log.exception("job %s failed in SelfMaker", record.arn)
            self._stop_instances(run)
            self._end(run, "Failed", f"InternalServerError: SelfMaker could not run the job: {describe(err)}")
        return None

    def _lost_with(self, run: Run, node: str) -> None:
        """The job was taken over from a server that stopped (several servers on one database): its
        instances ran on that server's machine, out of this server's reach, and are lost with it. A stop
        asked for ends Stopped; otherwise the job fails with a reason a pipeline's RetryPolicies can match
        (SageMaker.JOB_INTERNAL_ERROR). Its outputs were never uploaded: nothing is uploaded now."""
        if run.record.status == "Stopping":
            return self._end(run, "Stopped", None, upload=False)
        host = node.split(":", 1)[0]
        return self._end(
            run,
            "Failed",
            f"InternalServerError: the job's instances ran on the SelfMaker server on {host}, which stopped; "
            "with the local executor an instance runs on the machine of the server that started it and is "
            "lost with that server",
            upload=False,
        )

    def _adopt(self, run: Run, node: str) -> bool:
        """Take over instances a stopped server started where they run out of its machine (takeover.adopt);
        False: they ran where only that server reached them."""
        if not takeover.adopt(self.executor(run.backends), run, node):
            return False
        with _watched_lock:
            _watched.difference_update(instance.state for instance in run.instances)  # watched anew from here
        return True

    def _stop_instances(self, run: Run, lease_lost: bool = False) -> None:
        """A job failing while instances run (an upload refused) ends them: nothing may outlive its job. Not
        when the lease was lost: instances the new owner reaches (a Ray node's) are its to drive."""
        ex = self.executor(run.backends)
        for instance in run.instances:
            if lease_lost and ex.identity(instance.state) is not None:
                continue
            if instance.state.exists():
                try:
                    self.executor(run.backends).stop(instance.state)
                except Exception:
                    log.exception("could not stop %s of %s", instance.host, run.record.arn)

    def _start(self, run: Run) -> bool:
        """Build the runtime, fetch the inputs, launch the instances; False while the runtime is still
        building (off this thread: the job can be stopped meanwhile, engines/background_builds.py)."""
        ex = self.executor(run.backends)
        for instance in run.instances:  # a previous server may have launched some before it died
            if instance.state.exists():
                ex.stop(instance.state)
        run.ship_logs()
        first = run.instances[0]
        try:
            ex.check()
        except ExecutorUnavailable as err:
            raise JobFailure(f"ClientError: {err}") from None
        try:
            runtime = runtimes.resolve(
                self.image(run.data), runtimes.load_config(run.backends.settings.runtimes_config)
            )
            settings = run.backends.settings

            def building(message: str) -> None:  # a training job's SecondaryStatus says why it waits
                run.update(lambda d: self.progress(d, "DownloadingTrainingImage", message))

            if not ex.builds_runtimes:  # else each node builds it from the spec, once
                arn = run.record.arn
                waiting = background_builds(run.backends).wait(arn, runtime, first.say, lambda: kick(run.backends, arn))
                if waiting is not None:
                    if run.state.get("waiting") != waiting:

                        def note(d: dict) -> None:
                            d["_run"] = {**d.get("_run", {}), "waiting": waiting}
                            self.progress(d, "DownloadingTrainingImage", waiting)

                        run.update(note)
                    return False
                runtimes.ensure(
                    runtime, settings.runtimes_dir, first.say, building=building, **runtimes.options(settings)
                )
        except (runtimes.UnknownImage, runtimes.RuntimeBuildError) as err:
            raise JobFailure(f"ClientError: {err}") from None
        issued = run.data.get("_credentials") or credentials.mint()

        def downloading(d: dict) -> None:
            d.setdefault("_credentials", issued)  # the job's own key (credentials.py), kept across restarts
            self.progress(d, "Downloading", "Downloading input data")

        run.update(downloading)
        credentials.grant(run.backends, run.record)
        # On this machine: the type's size capped by it; on a cluster's node: its size, for Ray to place.
        sized = instance_types.limits if ex.shares_files else instance_types.size
        try:
            limits = sized(self.instance_type(run.data))
            run.placement = ex.place(run.record.arn, len(run.instances), limits)
        except (ExecutorUnavailable, ValueError) as err:
            raise JobFailure(f"ClientError: {err}") from None
        try:
            self._launch(run, ex, runtime, limits)
        except BaseException:  # an input refused, say: what place() reserved for the instances is given back
            if run.placement.reservation:
                ex.release(run.placement.reservation)
            raise
        # A retried job keeps its first start: MaxRuntimeInSeconds bounds the complete job, retries included.
        started = run.state.get("started") or now()

        node = leases(run.backends).node

        # How another server finds the instances, where they run out of this machine (a Ray cluster's nodes).
        found = {i.host: known for i in run.instances if (known := ex.identity(i.state)) is not None}

        def launched(d: dict) -> None:
            # The node (host and data directory) whose executor runs the instances: a server that takes the
            # job over from another node follows them there by ``instances``, or cannot reach them
            # (docs/scale-out.md).
            d["_run"] = {**d.get("_run", {}), "phase": "Running", "started": started, "node": node}
            if found:
                d["_run"] |= {"instances": found, "shipped": {}}
            self.started(d, started)
            self.progress(d, "Training", "Training image download completed. Training in progress.")

        run.update(launched)
        self._watch(run)
        return True

    def _launch(self, run: Run, ex, runtime: runtimes.Runtime, limits) -> None:
        """Prepare every instance's files (its inputs, or on a cluster the list its node fetches), then start it."""
        hosts = run.dir / "hosts"
        hosts.write_text(hosts_file(run.instances, run.placement))
        specs = []
        for instance in run.instances:
            shutil.rmtree(instance.ml, ignore_errors=True)
            shutil.rmtree(instance.site, ignore_errors=True)
            for sub in ("input/config", "input/data", "model", "output/data", "code"):
                (instance.ml / sub).mkdir(parents=True, exist_ok=True)
            instance.site.mkdir(parents=True)
            instance.fetches = None if ex.shares_files else []  # a node fetches the S3 data itself
            self.prepare(run, instance, runtime)
            specs.append(self._spec(run, instance, runtime, limits, hosts))
        command = self.command(run, runtime)
        for instance, spec in zip(run.instances, specs):
            spec.command = command
            spec.reservation = run.placement.reservation
            instance.say(
                f"SelfMaker: starting {instance.host} ({self.instance_type(run.data)}: "
                f"{limits.cpus} CPU, {limits.memory_bytes >> 20} MiB{f', {limits.gpus} GPU' if limits.gpus else ''}) "
                f"with runtime {runtime.key}"
            )
            try:
                ex.start(spec)
            except ExecutorUnavailable as err:
                raise JobFailure(f"ClientError: {err}") from None

    def _spec(self, run: Run, instance: Instance, runtime: runtimes.Runtime, limits, hosts: Path) -> InstanceSpec:
        spec = self._sandbox(run, instance, runtime, limits, hosts)
        if instance.fetches is not None:  # its node moves the data, as the job (credentials.py)
            issued = run.data["_credentials"]
            spec.fetches = instance.fetches
            spec.uploads = self.uploads(run, instance)
            spec.store = StoreAccess(
                f"http://127.0.0.1:{run.backends.settings.port}",
                issued["AccessKeyId"],
                issued["SecretAccessKey"],
                run.record.region,
            )
        return spec

    def _sandbox(self, run: Run, instance: Instance, runtime: runtimes.Runtime, limits, hosts: Path) -> InstanceSpec:
        return sandbox.spec(
            run.backends.settings,
            runtime,
            region=run.record.region,
            ml=instance.ml,
            site=instance.site,
            state=instance.state,
            log=instance.log_path,
            env={
                **SHARED_HOST_ENVIRONMENT,
                **credentials.environment(run.data),
                **self.environment(run, instance, runtime),
                # The GPUs it has (a Ray executor says what it really reserved: ray_cluster.py).
                "SM_NUM_GPUS": str(limits.gpus),
                **(run.data.get("Environment") or {}),
            },
            limits=limits,
            network=not self.network_isolated(run.data),
            hostname=instance.host,
            mounts=(Mount(hosts, "/etc/hosts"), *self.mounts(run, instance)),
        )

    def _watch(self, run: Run) -> None:
        """Kick the reconciler when each instance ends (once per instance per server process)."""
        ex = self.executor(run.backends)
        for instance in run.instances:
            with _watched_lock:
                if instance.state in _watched:
                    continue
                _watched.add(instance.state)
            ex.watch(
                instance.state,
                lambda arn=run.record.arn: kick(run.backends, arn),
                driving=lambda arn=run.record.arn: leases(run.backends).holds(arn),
            )

    def _follow(self, run: Run) -> float | None:
        run.ship_logs()
        self._watch(run)
        ex = self.executor(run.backends)
        takeover.confirm_lease(run, ex)
        statuses = [self.exit_status(run, i, ex.poll(i.state)) for i in run.instances]
        failed = [(i, s) for i, s in zip(run.instances, statuses) if s is not None and not s.succeeded]
        if failed or all(s is not None for s in statuses):
            for instance in run.instances:  # one instance failing ends the job
                ex.stop(instance.state)
            return self._conclude(run, statuses)
        limit = self.max_runtime(run.data)
        if limit:
            remaining = run.state["started"] + limit - time.time()
            if remaining <= 0:
                run.update(self._max_runtime_exceeded)
                return self._stop(run)
        again = self.while_running(run)
        waits = [w for w in (again, remaining if limit else None) if w is not None]
        return min(waits) if waits else 60.0  # watchers kick at the end; this is only a safety net

    def _conclude(self, run: Run, statuses: list[ExitStatus | None]) -> None:
        for instance, status in zip(run.instances, statuses):
            if status is None or (status.succeeded and not status.failure):
                continue
            if status.failure:  # its node could not fetch an input or upload an output: the job's own reason
                return self._end(run, "Failed", status.failure)
            if status.code is None:
                return self._end(
                    run,
                    "Failed",
                    f"InternalServerError: the instance {instance.host} of the job ended abnormally: {status.reason}",
                )
            return self._end(run, "Failed", self.failure_reason(run, instance, status))
        return self._end(run, "Completed", None)

    def _max_runtime_exceeded(self, data: dict) -> None:
        data[self.status_member] = "Stopping"
        data["_run"] = {**data.get("_run", {}), "max_runtime": True}
        self.progress(data, "Stopping", "Stopping the job: it exceeded MaxRuntimeInSeconds")

    def _stop(self, run: Run) -> float | None:
        """SIGTERM every instance, SIGKILL after the grace period; the job is Stopped once all have ended,
        after its outputs (a stopped training job's model too) are uploaded."""
        ex = self.executor(run.backends)
        takeover.confirm_lease(run, ex)
        grace = run.backends.settings.stop_grace_seconds
        running = False
        for instance in run.instances:
            if instance.state.exists():
                ex.stop(instance.state, grace)
                running = running or ex.poll(instance.state) is None
        if running:
            run.ship_logs()
            self._watch(run)  # kicks the moment the last one ends; the delay enforces SIGKILL after a restart
            return grace + 0.5
        for instance in run.instances:  # its node could not upload a stopped job's outputs
            if instance.state.exists() and (status := ex.poll(instance.state)) is not None and status.failure:
                self._end(run, "Failed", status.failure)
                return None
        self._end(run, "Stopped", None, max_runtime=bool(run.state.get("max_runtime")))
        return None

    def _retry(self, run: Run, reason: str) -> bool:
        """Start the job again after an InternalServerError if its RetryStrategy allows another attempt
        (AWS: "When the job is retried, its SecondaryStatus is changed to STARTING"). The instances have
        ended (or were lost with their server); the next step starts them afresh, logging to the same streams."""
        attempt = run.state.get("attempt", 1)
        allowed = self.retry_attempts(run.data)
        if attempt > allowed or run.record.status != "InProgress":
            return False
        shown = run.without_host_paths(reason)
        for instance in run.instances:
            instance.say(f"SelfMaker: retrying the job (retry {attempt} of {allowed}) after: {shown}")
            with _watched_lock:  # the new processes need watchers of their own
                _watched.discard(instance.state)

        def again(d: dict) -> None:
            kept = {k: v for k, v in d.get("_run", {}).items() if k == "started"}
            d["_run"] = {**kept, "phase": "Starting", "attempt": attempt + 1}
            self.progress(d, "Starting", f"Retrying the job (retry {attempt} of {allowed}) after: {shown}"[:1024])

        run.update(again)
        kick(run.backends, run.record.arn)
        return True

    def _end(self, run: Run, outcome: str, reason: str | None, max_runtime: bool = False, upload: bool = True) -> None:
        """Ship the logs, upload the outputs, then (only then) record the terminal status; or, for an
        InternalServerError the job's RetryStrategy covers, start it again."""
        background_builds(run.backends).leave(run.record.arn)  # a build no one else waits for is cancelled
        if outcome == "Failed" and retryable(reason) and self._retry(run, reason or ""):
            return
        fields: dict = {}
        if upload:
            if outcome != "Failed" or run.state.get("phase") == "Running":
                run.update(lambda d: self.progress(d, "Uploading", "Uploading generated training model"))
            try:
                outcome, reason, fields = self.finish(run, outcome, reason)
            except JobFailure as failure:
                outcome, reason, fields = "Failed", str(failure), {}
            run.finish_logs()
        ended = now()

        def terminal(d: dict) -> None:
            credentials.revoke(run.backends, d)  # the job's own key dies with it
            d.update(fields)
            d[self.status_member] = outcome
            d["_run"] = {**d.get("_run", {}), "phase": "Done"}
            if reason:
                d["FailureReason"] = run.without_host_paths(reason)[:REASON_LIMIT]
            self.ended(d, ended)
            if max_runtime:
                self.progress(d, "MaxRuntimeExceeded", "Job stopped because it exceeded MaxRuntimeInSeconds")
            else:
                self.progress(
                    d,
                    outcome,
                    {
                        "Completed": "Training job completed",
                        "Failed": "Training job failed",
                        "Stopped": "Training job stopped",
                    }[outcome],
                )

        run.update(terminal)
        if not self.records_experiments:
            self.after_end(run)
            return
        try:
            component = self.component(run)
            component_arn = experiments.record_job(
                run.ctx,
                run.record.arn,
                status=outcome,
                message=run.without_host_paths(reason) if reason else reason,
                end_time=ended,
                **component,
            )
            provenance.record(
                run.ctx,
                component_arn,
                _artifact_types(component["input_artifacts"], "DataSet"),
                _artifact_types(component["output_artifacts"], self.output_artifact_type),
            )
        except Exception:
            log.exception("could not record %s in experiments and lineage", run.record.arn)
        self.after_end(run)
