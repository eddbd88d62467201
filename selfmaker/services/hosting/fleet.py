"""The model-server instances behind endpoint variants.

A :class:`Group` is the instances of one variant of one endpoint
configuration. :meth:`Fleet.ensure` hands it to a keeper (one per group, a
Periodic worker: engines/periodic.py) that keeps ``count`` instances running:
each a sandboxed model server (engines/model_server.py) in the runtime of the
Model's image, started through the shared executor with its instance type's
limits. The keeper pings every instance: quickly while it starts, then every
2 s as a health check. An
instance counts as ready once it answers /ping; one that exits, or stops
answering three checks in a row, is replaced, and SelfMaker says so in the
instance's CloudWatch Logs stream (/aws/sagemaker/Endpoints/NAME,
``VARIANT/INSTANCE-ID``) next to the server's own output.

Nothing lives only in memory: the instances are directories (instances.py)
and processes that outlive the server, so a restarted server's ``ensure``
re-attaches to the ones still running and replaces the others. A clean
shutdown stops every instance (and marks it, so the next server starts it
again under the same id); a crash leaves them serving.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...backends import Backends, background_worker
from ...engines import instance_types, model_server, runtimes, sandbox
from ...engines.executor import ExecutorUnavailable, ExitStatus
from ...engines.periodic import Periodic
from ...objects.access import AccountObjects
from ..jobs import logship
from ..jobs.lifecycle import cluster_executor
from . import instances
from .instances import Instance

log = logging.getLogger("selfmaker.hosting.fleet")

HEALTH_SECONDS = 2.0  # between health checks of a ready instance
STARTING_POLL_SECONDS = 0.025  # between pings of an instance that has not answered yet
PING_TIMEOUT = 2.0  # SageMaker's /ping timeout
UNHEALTHY_CHECKS = 3  # failed health checks in a row that get a ready instance replaced
FAILED_STARTS = 3  # starts in a row that end before answering /ping: the group has failed
STARTUP_SECONDS = 600.0  # an instance silent this long after its start counts as a failed start
GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL after this long
DRAIN_SECONDS = 2.0  # an instance leaving a group is out of ready() this long before its SIGTERM


@dataclass(frozen=True)
class Group:
    """The instances of one variant of one endpoint configuration."""

    key: str  # unique, stable across restarts, filesystem-safe (the endpoint controller chooses it)
    account_id: str
    region: str
    endpoint_name: str
    variant_name: str
    model: dict  # the Model record's data (DescribeModel's shape)
    instance_type: str
    count: int
    env: dict = field(default_factory=dict)  # the instances' own environment: the endpoint's credentials

    @property
    def log_group(self) -> str:
        return f"/aws/sagemaker/Endpoints/{self.endpoint_name}"

    def stream(self, instance: Instance) -> str:
        return f"{self.variant_name}/{instance.id}"


class _GroupFailure(Exception):
    """The group cannot become ready; the message is the endpoint's FailureReason."""


@dataclass
class _Seen:
    """A running instance as its keeper follows it."""

    instance: Instance
    misses: int = 0  # failed health checks in a row
    checked: float = 0.0  # monotonic time of the last health check


def _terminate(ex, instance: Instance) -> None:
    """SIGTERM, SIGKILL after the grace period; returns once the instance has ended."""
    ex.stop(instance.state, GRACE_SECONDS)
    deadline = time.monotonic() + GRACE_SECONDS + 1
    while ex.poll(instance.state) is None:
        if time.monotonic() > deadline:
            ex.stop(instance.state)  # past the deadline: SIGKILL now
            return
        time.sleep(0.02)


class _Keeper:
    """One group's instances, kept at its count by its own thread."""

    def __init__(self, fleet: Fleet, group: Group, root: Path, adopt: dict[str, dict] | None = None):
        self.fleet, self.group, self.root = fleet, group, root
        self._adopt_first = adopt or {}
        self.ready: tuple[str, ...] = ()
        self._seen: dict[str, _Seen] = {}
        self._to_restart: list[Instance] = []  # stopped by a clean shutdown: started again under the same id
        self._replaced: list[str] = []  # ids of dead instances whose replacements are not started yet
        self._leaving: dict[str, threading.Thread] = {}  # instances being stopped in the background
        self._lock = threading.Lock()  # a launch never interleaves with closing the keeper
        self._file_lock = threading.Lock()  # group.json is written by ensure() and by the keeper's thread
        self._closed = False
        self._runtime: tuple[str, runtimes.Runtime] | None = None
        saved = self._load()
        self.failure: str | None = saved.get("failure")
        self._failed_starts: int = saved.get("failed_starts", 0)
        # Steps at once, then every HEALTH_SECONDS / 4 (faster while an instance starts), or when woken.
        self._worker = Periodic(f"fleet-{group.key}", HEALTH_SECONDS / 4, self._run, run_at_start=True, final_run=False)

    # -- the group's own file ----------------------------------------------------------------

    def _load(self) -> dict:
        try:
            return json.loads((self.root / "group.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        with self._file_lock:
            if self._closed:
                return
            self.root.mkdir(parents=True, exist_ok=True)
            temporary = self.root / "group.json.tmp"
            temporary.write_text(
                json.dumps({"group": asdict(self.group), "failure": self.failure, "failed_starts": self._failed_starts})
            )
            temporary.replace(self.root / "group.json")

    # -- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        self._save()
        self._adopt(self._adopt_first)
        self._worker.start()

    def _adopt(self, found: dict[str, dict]) -> None:
        """Follow the ready instances a stopped server drove (their identities from the endpoint's record), on a
        cluster's nodes: same ids, same addresses, same log streams; none is started again. An instance already
        in this server's directory (its own, from before a restart) is followed as it is."""
        ex = cluster_executor(self.fleet.backends)
        for id_, identity in found.items():
            instance = Instance(self.root / id_)
            if instance.root.exists() or not id_.startswith(instances.PREFIX) or "/" in id_:
                continue
            instance.root.mkdir(parents=True)
            instance.mark_started(None)
            instance.mark_answered()  # it answered its first /ping on the other server; health checks go on
            instance.say(f"the server driving {id_} stopped; this server follows it now")
            try:
                ex.adopt(instance.state, identity, instance.log_path)
            except Exception:
                log.exception("fleet: could not take over %s of %s", id_, self.group.key)
                instance.remove()

    def wake(self) -> None:
        self._worker.wake()

    def close(self) -> None:
        """Stop keeping the group (its instances are left as they are) and wait for the thread."""
        with self._lock:
            self._closed = True
        self._worker.stop(2 * PING_TIMEOUT + GRACE_SECONDS)
        for thread in list(self._leaving.values()):
            thread.join(GRACE_SECONDS + 2)

    def _run(self) -> float:
        """One step (the Periodic logs a bug and steps again); the seconds until the next."""
        before = (self.ready, self.failure)
        try:
            self._step()
        except _GroupFailure as failure:
            self._fail(str(failure))
        finally:
            if (self.ready, self.failure) != before and not self._closed:
                self.fleet._notify(self.group.key)
        starting = any(not s.instance.answered for s in self._seen.values())
        return STARTING_POLL_SECONDS if starting else HEALTH_SECONDS / 4

    def _step(self) -> None:
        ex = cluster_executor(self.fleet.backends)
        if not self._drives(ex):
            return
        self._leaving = {id_: thread for id_, thread in self._leaving.items() if thread.is_alive()}
        known = {*self._seen, *self._leaving, *(i.id for i in self._to_restart)}
        for instance in instances.on_disk(self.root):
            if instance.id not in known:  # started by an earlier server
                self._attach(instance)
                if ex.poll(instance.state) is None:
                    instance.say(f"re-attached to {instance.id}, still running after a server restart")
        for seen in list(self._seen.values()):
            if self._closed:
                return
            self._check(ex, seen)
        if not (self.failure or self._closed) and self._drives(ex):
            self._resize(ex)
        self.ready = tuple(
            address for s in self._seen.values() if s.instance.answered and (address := _address(ex, s.instance))
        )

    def _drives(self, ex) -> bool:
        """Whether this server may act on the group's instances now. Where another server can take them over
        (a Ray cluster's), asked again before each action: a pause can fall anywhere, even inside a call to
        the cluster. Not sure (its heartbeat is late): no. Another server took them over: it lets go."""
        if self._closed:
            return False
        if not ex.adoptable or self.fleet.driving is None:
            return True
        driving = self.fleet.driving(self.group)
        if driving is False:
            self._let_go()
        return driving is True

    def _let_go(self) -> None:
        """Another server drives the group's endpoint now and follows its instances (the record names them):
        stop keeping them here and forget them, leaving them running. Its log shippers ship nothing more."""
        log.info("fleet: another server drives group %s now; letting go of its instances", self.group.key)
        with self._lock:
            self._closed = True
        self._worker.stop()  # from its own thread: this step is its last
        for seen in list(self._seen.values()):
            logship.finish(seen.instance.log_path)
            seen.instance.remove()
        self._seen.clear()
        self.ready = ()
        self.fleet._forget(self)

    # -- following instances ---------------------------------------------------------------

    def _attach(self, instance: Instance) -> None:
        """Follow an instance found on disk (started by this keeper, or by a server before a restart)."""
        self._seen[instance.id] = _Seen(instance)
        instance.log_path.touch()
        noting, ex = self.fleet.note_shipped, cluster_executor(self.fleet.backends)
        driving = self.fleet.driving if ex.adoptable else None
        logship.follow(
            self.fleet.backends.store,
            self.group.account_id,
            self.group.region,
            self.group.log_group,
            self.group.stream(instance),
            instance.log_path,
            on_shipped=(lambda offset: noting(self.group, instance, offset)) if noting else None,
            # Only while surely driving it: a server resumed after a pause must not ship lines the server that
            # took the instance over ships too.
            ships=(lambda: driving(self.group) is True) if driving else None,
        )
        if instance.state.exists():
            ex.watch(instance.state, self.wake, driving=(lambda: driving(self.group) is not False) if driving else None)

    def _check(self, ex, seen: _Seen) -> None:
        instance = seen.instance
        if not ex.started(instance.state):  # a server stopped between creating it and starting it
            instance.say(f"{instance.id} was never started; starting another instance")
            return self._discard(ex, seen, replace=True)
        status = ex.poll(instance.state)
        if not self._drives(ex):
            return None
        if status is not None:
            return self._ended(seen, status)
        now = time.monotonic()
        if instance.answered and now - seen.checked < HEALTH_SECONDS:
            return None
        seen.checked = now
        answers = model_server.ping(_address(ex, instance), PING_TIMEOUT)
        if not self._drives(ex):
            return None
        if answers:
            if seen.misses:
                instance.say(f"{instance.id} answers /ping again")
            seen.misses = 0
            if not instance.answered:
                instance.mark_answered()
                instance.say(
                    f"{instance.id} is ready: it answered /ping {time.time() - instance.started:.2f} s after its start"
                )
                if self._failed_starts:
                    self._failed_starts = 0
                    self._save()
        elif instance.answered:
            seen.misses += 1
            if seen.misses >= UNHEALTHY_CHECKS:
                instance.say(f"{instance.id} did not answer /ping {seen.misses} health checks in a row; replacing it")
                self._discard(ex, seen, replace=True)
        elif time.time() - instance.started > STARTUP_SECONDS:
            instance.say(f"{instance.id} did not answer /ping within {STARTUP_SECONDS:.0f} s of its start")
            self._failed_start(ex, seen, f"it did not answer /ping within {STARTUP_SECONDS:.0f} s")

    def _ended(self, seen: _Seen, status: ExitStatus) -> None:
        instance = seen.instance
        ex = cluster_executor(self.fleet.backends)
        if instance.shut_down:  # a clean server shutdown stopped it: start it again, same id
            del self._seen[instance.id]
            logship.finish(instance.log_path)
            self._to_restart.append(instance)
            return
        how = f"exited with code {status.code}" if status.code is not None else f"ended ({status.reason})"
        if instance.answered:
            instance.say(f"{instance.id} {how}; replacing it")
            self._discard(ex, seen, replace=True)
            return
        last = instance.last_output()
        instance.say(f"{instance.id} {how} before answering /ping")
        self._failed_start(ex, seen, f"{how}: {last}" if last else how)

    def _failed_start(self, ex, seen: _Seen, what: str) -> None:
        """Replace an instance that never answered; the group fails when that happens too often in a row."""
        instance = seen.instance
        self._failed_starts += 1
        self._save()
        failure = None
        if self._failed_starts >= FAILED_STARTS:
            failure = (
                f"The model server of variant {self.group.variant_name} stopped before answering /ping "
                f"{self._failed_starts} times in a row (the last one, {instance.id}: {what}). See the logs "
                f"in CloudWatch Logs group {self.group.log_group}."
            )
            instance.say(f"the variant failed: {failure}")
        self._discard(ex, seen, replace=failure is None)
        if failure:
            raise _GroupFailure(failure)

    def _discard(self, ex, seen: _Seen, replace: bool) -> None:
        """Forget an instance that has ended (or must end now): stop it, ship its last lines, remove its files."""
        instance = seen.instance
        del self._seen[instance.id]
        ex.stop(instance.state)
        logship.finish(instance.log_path)
        instance.remove()
        if replace:
            self._replaced.append(instance.id)

    def _fail(self, reason: str) -> None:
        log.info("fleet: group %s failed: %s", self.group.key, reason)
        self.failure = reason[:1024]
        self._save()
        ex = cluster_executor(self.fleet.backends)
        for seen in list(self._seen.values()):  # the others would only keep failing the same way
            if not seen.instance.answered:
                seen.instance.say(f"stopping {seen.instance.id}: the variant failed: {reason}")
                self._discard(ex, seen, replace=False)

    # -- starting and stopping ---------------------------------------------------------

    def _resize(self, ex) -> None:
        group = self.group
        running = list(self._seen.values())
        extra = len(running) - group.count
        if extra > 0:  # the ones not serving yet go first, then the newest
            by_preference = sorted(running, key=lambda s: (s.instance.answered, -s.instance.started))
            for seen in by_preference[:extra]:
                seen.instance.say(f"stopping {seen.instance.id}: the variant now has {group.count} instance(s)")
                self._leave(seen)
            return
        for _ in range(group.count - len(running)):
            if self._closed or self.failure:
                return
            if self._to_restart:
                self._launch(ex, self._to_restart.pop(0), None)
            else:
                replaces = self._replaced.pop(0) if self._replaced else None
                self._launch(ex, Instance(self.root / instances.new_id()), replaces)

    def _leave(self, seen: _Seen) -> None:
        """Take an instance out of ready(), then stop it gracefully in the background: routes move off it
        (subscribers hear of the change) before its SIGTERM, and the keeper goes on checking the others."""
        instance = seen.instance
        del self._seen[instance.id]

        def stop() -> None:
            time.sleep(DRAIN_SECONDS)
            self.fleet._stop_instance(instance, self.group, remove=True)

        thread = self._leaving[instance.id] = threading.Thread(target=stop, name=f"stop-{instance.id}", daemon=True)
        thread.start()

    def _launch(self, ex, instance: Instance, replaces: str | None) -> None:
        group, backends = self.group, self.fleet.backends
        again = instance.root.exists()
        instance.root.mkdir(parents=True, exist_ok=True)
        instance.mark_started(replaces)
        instance.log_path.touch()
        logship.follow(
            backends.store, group.account_id, group.region, group.log_group, group.stream(instance), instance.log_path
        )
        try:
            self._start(ex, instance, replaces, again)
        except BaseException as err:  # nothing half-started stays behind; the reason is in its stream
            if isinstance(err, _GroupFailure):
                instance.say(f"cannot start {instance.id}: {err}")
            if ex.started(instance.state):
                ex.stop(instance.state)
            logship.finish(instance.log_path)
            instance.remove()
            raise

    def _start(self, ex, instance: Instance, replaces: str | None, again: bool) -> None:
        group, backends = self.group, self.fleet.backends
        runtime = self._ensure_runtime(ex, instance)
        here = ex.shares_files  # else on a node of a cluster, reached over TCP (docs/scale-out.md)
        if not here and group.model.get("EnableNetworkIsolation"):
            raise _GroupFailure(
                f"ClientError: model {group.model.get('ModelName')} has EnableNetworkIsolation, and the "
                f"{ex.name} executor reaches endpoint instances on its nodes over the network: serve it with "
                "--executor local, or create the model without network isolation"
            )
        # On this machine: the type's size capped by it; on a cluster's node: its size, for the cluster to place.
        limits = (instance_types.limits if here else instance_types.size)(group.instance_type)
        why = " after a server restart" if again else f" to replace {replaces}" if replaces else ""
        instance.say(
            f"starting {instance.id}{why} ({group.instance_type}: {limits.cpus} CPU, "
            f"{limits.memory_bytes >> 20} MiB) with runtime {runtime.key}"
        )
        container = model_server.container_of(group.model)
        shutil.rmtree(instance.ml, ignore_errors=True)
        shutil.rmtree(instance.site, ignore_errors=True)
        try:
            # As the endpoint's account: a bucket that changed hands since CreateModel is refused here.
            model_server.prepare(AccountObjects.of(backends, group.account_id), container, instance.ml)
        except model_server.ModelDataError as err:
            raise _GroupFailure(
                f"ClientError: could not load the model data of variant {group.variant_name}: {err}"
            ) from None
        spec = sandbox.spec(
            backends.settings,
            runtime,
            region=group.region,
            ml=instance.ml,
            site=instance.site,
            state=instance.state,
            log=instance.log_path,
            env={**group.env, **model_server.environment(container)},  # the model's Environment wins
            limits=limits,
            network=not group.model.get("EnableNetworkIsolation"),
            hostname=instance.id,
            mounts=(model_server.socket_mount(instance.root),) if here else (),
        )
        spec.command = list(model_server.COMMAND)
        spec.serves = True
        Path(instance.socket).unlink(missing_ok=True)
        with self._lock:
            if self._closed:
                instance.remove()
                return
            try:
                ex.start(spec)
            except ExecutorUnavailable as err:
                raise _GroupFailure(f"ClientError: {err}") from None
            self._attach(instance)

    def _ensure_runtime(self, ex, instance: Instance) -> runtimes.Runtime:
        """The runtime of the model's image, built on first use (its creation logged in the instance's stream)."""
        image = model_server.container_of(self.group.model).get("Image", "")
        settings = self.fleet.backends.settings
        try:
            if self._runtime is None or self._runtime[0] != image:
                self._runtime = image, runtimes.resolve(image, runtimes.load_config(settings.runtimes_config))
            runtime = self._runtime[1]
            if not ex.builds_runtimes:  # else the node builds it from the spec, once (ray_node.py)
                runtimes.ensure(runtime, settings.runtimes_dir, instance.append, **runtimes.options(settings))
        except (runtimes.UnknownImage, runtimes.RuntimeBuildError, model_server.ModelDataError) as err:
            raise _GroupFailure(f"ClientError: {err}") from None
        return runtime


def _address(ex, instance: Instance) -> str | None:
    """Where the router and the health check reach an instance: its Unix socket on this machine; on a cluster's
    node, ``host:port`` on TCP once it listens (None before)."""
    return instance.socket if ex.shares_files else ex.serving_address(instance.state)


def _saved_group(root: Path) -> Group | None:
    """The group as its directory recorded it (for a retire before any ensure, after a restart)."""
    try:
        return Group(**json.loads((root / "group.json").read_text())["group"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Fleet:
    """The server's model-server instances, by group."""

    def __init__(self, backends: Backends):
        self.backends = backends
        self._keepers: dict[str, _Keeper] = {}
        self._callbacks: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        self._shut = False
        # Told, after each batch of an instance's log is shipped, its offset (the endpoint controller notes it
        # in the record for instances another server can take over: deployments.py).
        self.note_shipped: Callable[[Group, Instance, int], None] | None = None
        # Whether this server still drives a group's endpoint, for instances another server can take over (set
        # where several servers share the database: deployments.py): True; None, not sure now (its heartbeat is
        # late); False, another server took it over (this one was paused past its lease).
        self.driving: Callable[[Group], bool | None] | None = None

    def _dir(self, account_id: str, region: str, key: str) -> Path:
        return self.backends.settings.data_dir / "endpoints" / account_id / region / key

    def _find(self, key: str) -> Path | None:
        """A group's directory from its key alone (after a restart, before any ensure)."""
        with self._lock:
            keeper = self._keepers.get(key)
        if keeper is not None:
            return keeper.root
        found = list((self.backends.settings.data_dir / "endpoints").glob(f"*/*/{key}"))
        return found[0] if found else None

    # -- the interface the endpoint controller uses --------------------------------------------

    def ensure(self, group: Group, adopt: dict[str, dict] | None = None) -> None:
        """Keep ``group.count`` instances of the group running; quick, never waits for readiness. ``adopt``: the
        instances a stopped server drove (id -> identity, from the record), followed by a keeper made now."""
        if group.count < 0:
            raise ValueError("an instance count cannot be negative")
        with self._lock:
            if self._shut:
                return
            keeper = self._keepers.get(group.key)
            if keeper is None:
                keeper = self._keepers[group.key] = _Keeper(
                    self, group, self._dir(group.account_id, group.region, group.key), adopt
                )
                keeper.start()
            elif keeper.group != group:
                keeper.group = group
                keeper._save()
        keeper.wake()

    def ready(self, key: str) -> tuple[str, ...]:
        """Addresses (socket paths, or host:port on a cluster's nodes) of the group's instances that answer /ping."""
        keeper = self._keepers.get(key)
        return keeper.ready if keeper is not None else ()

    def identities(self, key: str) -> dict[str, dict]:
        """What another server needs to follow each of the group's ready instances (id -> identity), for those
        it can follow (on a cluster's nodes; none on this machine's executor)."""
        keeper = self._keepers.get(key)
        if keeper is None:
            return {}
        ex = cluster_executor(self.backends)
        return {
            id_: identity
            for id_, seen in list(keeper._seen.items())
            if seen.instance.answered and (identity := ex.identity(seen.instance.state)) is not None
        }

    def failure(self, key: str) -> str | None:
        """Why the group cannot become ready, if it cannot."""
        keeper = self._keepers.get(key)
        if keeper is not None:
            return keeper.failure
        root = self._find(key)
        if root is None:
            return None
        try:
            return json.loads((root / "group.json").read_text()).get("failure")
        except (OSError, ValueError):
            return None

    def _forget(self, keeper: _Keeper) -> None:
        """Drop a keeper that let go of its group (another server drives it): a later ensure() makes a new one."""
        with self._lock:
            if self._keepers.get(keeper.group.key) is keeper:
                del self._keepers[keeper.group.key]

    def retire(self, key: str) -> None:
        """Stop the group's instances (SIGTERM, then SIGKILL after a grace period) and remove their files."""
        root = self._find(key)
        with self._lock:
            keeper = self._keepers.pop(key, None)
        if keeper is not None:
            keeper.close()
        if root is None:
            return
        group = keeper.group if keeper is not None else _saved_group(root)
        members = instances.on_disk(root)
        for instance in members:
            instance.say(f"stopping {instance.id}: its variant's instances are retired")
        with ThreadPoolExecutor(max(1, len(members))) as pool:
            list(pool.map(lambda instance: self._stop_instance(instance, group, remove=True), members))
        shutil.rmtree(root, ignore_errors=True)

    def groups(self) -> list[tuple[Group, list[Instance]]]:
        """Every group this server keeps, with its instances on disk (for the utilization sampler)."""
        with self._lock:
            keepers = list(self._keepers.values())
        return [(k.group, instances.on_disk(k.root)) for k in keepers if not k._closed]

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(key)`` whenever a group's readiness changes (from the fleet's threads)."""
        with self._lock:
            self._callbacks.append(callback)

    # -- inside -------------------------------------------------------------------------

    def _notify(self, key: str) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:  # never while holding a lock: a callback may call back into the fleet
            try:
                callback(key)
            except Exception:
                log.exception("fleet: a readiness callback failed for %s", key)

    def _stop_instance(self, instance: Instance, group: Group | None, remove: bool) -> None:
        ex = cluster_executor(self.backends)
        if instance.state.exists():
            _terminate(ex, instance)
        if group is None:
            logship.finish(instance.log_path)
        else:  # ships the last lines even if no shipper follows the file (a restart, then retire)
            logship.finish(
                instance.log_path,
                self.backends.store,
                group.account_id,
                group.region,
                group.log_group,
                group.stream(instance),
            )
        if remove:
            instance.remove()

    def shutdown(self) -> None:
        """A clean server stop: stop every instance, marking it to start again with the next server."""
        with self._lock:
            self._shut = True
            keepers = list(self._keepers.values())
            self._keepers.clear()
        for keeper in keepers:
            keeper.close()
        ex = cluster_executor(self.backends)
        members = [
            (i, keeper.group)
            for keeper in keepers
            for i in instances.on_disk(keeper.root)
            if ex.started(i.state) and ex.poll(i.state) is None
        ]
        for instance, _ in members:
            instance.mark_shut_down()
            instance.say(f"stopping {instance.id}: SelfMaker is shutting down")
        if members:
            with ThreadPoolExecutor(len(members)) as pool:
                list(pool.map(lambda member: self._stop_instance(*member, remove=False), members))


def fleet(backends: Backends) -> Fleet:
    """The server's one Fleet."""
    return backends.shared("fleet", lambda: Fleet(backends))


class _ShutdownWorker:
    """Stops the fleet's instances when the server stops cleanly (a crash leaves them serving)."""

    def __init__(self, backends: Backends):
        self.backends = backends

    def start(self) -> None:
        pass

    def stop(self) -> None:
        running = self.backends.services.get("fleet")
        if running is not None:
            running.shutdown()


background_worker(_ShutdownWorker)
