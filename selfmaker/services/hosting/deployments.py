"""The endpoint controller: creation, blue/green and rolling deployments, rollback, capacity, deletion.

An endpoint record holds everything its next step needs (engines/reconciler.py):

- ``_live``: the release serving now (the "blue" fleet): its configuration's name, and per
  variant the model (a snapshot: deleting the Model later changes nothing), instance type,
  count, weight, the fleet Group key and how many instances answer /ping;
- ``_next``: during UpdateEndpoint, the release being deployed (the "green" fleet);
- ``_deploy``: the deployment's plan and progress: traffic share per step, the step, its
  phase (provision, bake, terminate, rollback), timestamps and the alarms to watch;
- ``_capacity``: an UpdateEndpointWeightsAndCapacities in progress;
- ``_rev``: bumped by every API change, so a step computed on an older record never
  overwrites one (it is simply run again);
- ``_addresses``: per fleet Group key, the ``host:port`` of its ready instances that listen
  on TCP (an executor's cluster nodes), so any server can route to them (shared_routes.py);
- ``_instances``: per fleet Group key, each such instance's identity (the executor's: its name
  on the cluster, the agent running it, its node and address), and ``_shipped``: per instance,
  how much of its own log is in CloudWatch Logs, so a server taking the endpoint over from a
  stopped one follows those instances instead of starting others (docs/scale-out.md).

What the router sees is a pure function of the record and the fleet's readiness
(:func:`route_for`), so after a server restart the same Route is published again.
A Route that sends traffic to a fleet is published only once that fleet answers
/ping, and a fleet stops only after a Route without it has been published and a
drain period has passed: no request fails during an update or a rollback.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from functools import partial

from ...aws.cloudwatch.alarms import alarm_state
from ...backends import Backends
from ...engines.leases import leases
from ...engines.reconciler import Controller, kick, register
from ...observability import server_metrics
from ...store.fencing import Fence, LeaseLost, fenced
from ...store.resources import Record, now
from ..jobs import credentials
from ..jobs.lifecycle import cluster_executor
from . import connections, routes
from .fleet import Group, fleet

log = logging.getLogger("selfmaker.hosting")

ACTIVE = frozenset({"Creating", "Updating", "RollingBack", "InService", "UpdateRollbackFailed", "Deleting"})
SERVING = frozenset({"InService", "Updating", "RollingBack", "UpdateRollbackFailed"})
DEFAULT_STARTUP_TIMEOUT = 3600  # seconds for a fleet to answer /ping, unless its variants say otherwise
DRAIN_SECONDS = 3.0  # between the last Route that sends a fleet requests and stopping it
SERVING_CHECK = 10.0  # an InService endpoint's fallback re-check (fleet callbacks come first)
POLL = 2.0  # while waiting for instances (fleet callbacks come first)


class Superseded(Exception):
    """An API call changed the record while a step was computed: run the step again."""


# -- groups and routes ------------------------------------------------------------------------------------


_owners_lock = threading.Lock()


def _owners(backends: Backends) -> dict[str, str]:
    """Group key -> endpoint ARN, so a fleet callback kicks the endpoint that owns the group."""
    with _owners_lock:
        owners = backends.services.get("hosting.group_owners")
        if owners is None:
            owners = backends.services["hosting.group_owners"] = {}
            pool = fleet(backends)
            pool.subscribe(lambda key: _group_changed(backends, key))
            if not leases(backends).local:  # only another server could take an instance over
                pool.note_shipped = partial(_note_shipped, backends, owners)
                pool.driving = partial(_driving, backends, owners)
    return owners


def _note_shipped(backends: Backends, owners: dict[str, str], group: Group, instance, local_offset: int) -> None:
    """Once lines of an instance another server could follow are shipped, note in the endpoint's record how much
    of the instance's own log they cover (written when it grows): a server taking over resumes the log there."""
    arn = owners.get(group.key)
    shipped = cluster_executor(backends).shipped(instance.state, local_offset)
    owner = leases(backends)
    if arn is None or shipped is None or not owner.holds(arn):
        return
    fence = owner.claim(arn)
    if not isinstance(fence, Fence):
        return

    def note(fresh: Record, _conn) -> None:
        known = fresh.data.setdefault("_shipped", {})
        if known.get(instance.id) == shipped:
            return
        known[instance.id] = shipped

    try:
        with fenced(fence):
            backends.resources.mutate(note, arn=arn, touch=False)
    except LeaseLost:
        pass


def _driving(backends: Backends, owners: dict[str, str], group: Group) -> bool | None:
    """Whether this server still drives the group's endpoint (fleet.py): False once it lost the lease (it was
    paused past it, and another server follows the instances now); None while its heartbeat is not surely valid."""
    arn = owners.get(group.key)
    owner = leases(backends)
    if arn is None:
        return True  # not an endpoint's group yet (its controller is making it)
    if not owner.holds(arn):
        return False
    return True if owner.valid() else None


def _group_changed(backends: Backends, key: str) -> None:
    arn = backends.services.get("hosting.group_owners", {}).get(key)
    if arn:
        kick(backends, arn)


def _group(record: Record, variant: dict, count: int | None = None) -> Group:
    return Group(
        key=variant["key"],
        account_id=record.account_id,
        region=record.region,
        endpoint_name=record.name,
        variant_name=variant["name"],
        model=variant["model"],
        instance_type=variant["instance_type"],
        count=variant["count"] if count is None else count,
        # The endpoint's own key (none for an endpoint created before endpoints had one: the sandbox's default).
        env=credentials.environment(record.data) if record.data.get("_credentials") else {},
    )


def _variants(release: dict) -> list[dict]:
    return release["variants"] + release["shadows"]


def _targets(
    variants: list[dict], ready: dict[str, tuple[str, ...]], config: str, counts: dict[str, int] | None = None
) -> tuple[routes.Target, ...]:
    """Each variant's ready instances, at most its count: the ones beyond it are about to stop."""
    return tuple(
        routes.Target(
            variant=v["name"],
            weight=float(v["weight"]),
            sockets=ready[v["key"]][: (counts or {}).get(v["key"], v["count"])],
            config_name=config,
        )
        for v in variants
    )


def shadow_fraction(release: dict) -> dict[str, float]:
    """A shadow variant's sampling fraction: its weight over the production variants' total, at most 1."""
    total = sum(v["weight"] for v in release["variants"])
    return {v["name"]: min(1.0, v["weight"] / total) if total > 0 else 0.0 for v in release["shadows"]}


def _shadows(release: dict, ready: dict[str, tuple[str, ...]]) -> tuple[routes.Target, ...]:
    fractions = shadow_fraction(release)
    return tuple(
        routes.Target(
            variant=v["name"],
            weight=fractions[v["name"]],
            sockets=ready[v["key"]][: v["count"]],
            config_name=release["config"],
        )
        for v in release["shadows"]
    )


def _capture(release: dict) -> dict | None:
    capture = release.get("capture")
    return capture if capture and capture.get("EnableCapture", True) else None


def _ready_here(backends: Backends, record: Record) -> dict[str, tuple[str, ...]]:
    """The addresses of each of the endpoint's fleets' ready instances, as this server's fleet keeps them."""
    data, pool = record.data, fleet(backends)
    nxt = data.get("_next")
    return {v["key"]: pool.ready(v["key"]) for v in _variants(data["_live"]) + (_variants(nxt) if nxt else [])}


def route_for(
    backends: Backends, record: Record, ready: dict[str, tuple[str, ...]] | None = None
) -> routes.Route | None:
    """The Route an endpoint's record calls for now, None when it must not serve; ``ready``: each fleet's ready
    instances (by group key), this server's fleet's unless given."""
    data = record.data
    if record.status not in SERVING:
        return None
    live, nxt, deploy = data["_live"], data.get("_next"), data.get("_deploy")
    if ready is None:
        ready = _ready_here(backends, record)
    share = deploy["share"] if deploy and nxt else 0.0
    old_counts = blue_counts(live, deploy) if deploy and deploy["strategy"] == "rolling" else None
    traffic = []
    if share < 1:
        traffic.append((1.0 - share, _targets(live["variants"], ready, live["config"], old_counts)))
    if share > 0:
        traffic.append((share, _targets(nxt["variants"], ready, nxt["config"])))
    serving = nxt if share >= 1 else live
    return routes.Route(
        account_id=record.account_id,
        region=record.region,
        endpoint_name=record.name,
        endpoint_arn=record.arn,
        traffic=tuple(traffic),
        shadows=_shadows(serving, ready),
        capture=_capture(serving),
    )


def shared_route(backends: Backends, record: Record) -> routes.Route | None:
    """The Route a server that does not drive the endpoint builds from its record: the instances reachable over
    TCP that the driving server wrote down (``_addresses``), none when they listen on its machine's Unix sockets."""
    if record.status not in SERVING:
        return None
    addresses = record.data.get("_addresses") or {}
    ready = {v["key"]: tuple(addresses.get(v["key"], ())) for r in _releases(record.data) for v in _variants(r)}
    return route_for(backends, record, ready)


def _releases(data: dict) -> list[dict]:
    return [data[m] for m in ("_live", "_next") if data.get(m)]


def _publish(backends: Backends, record: Record, ready: dict[str, tuple[str, ...]]) -> None:
    route = route_for(backends, record, ready)
    if route is None:
        routes.withdraw(backends, record.account_id, record.region, record.name)
    elif routes.lookup(backends, record.account_id, record.region, record.name) != route:
        routes.publish(backends, route)
    # A variant an update removed (or a rolled-back one) leaves /metrics with the Route that dropped it.
    current = frozenset(v["name"] for r in _releases(record.data) for v in _variants(r))
    server_metrics(backends).forget_endpoint(record.account_id, record.region, record.name, keep=current)


# -- deployment plans ----------------------------------------------------------------------------------------


def capacity_fraction(capacity: dict, total: int) -> float:
    """A CapacitySize as a fraction of a fleet of ``total`` instances."""
    if capacity["Type"] == "INSTANCE_COUNT":
        return capacity["Value"] / max(total, 1)
    return capacity["Value"] / 100.0


def _ceil(x: float) -> int:
    """The integer at or above ``x``, forgiving float error (3 * (2/3) is 2, not 3)."""
    return math.ceil(x - 1e-6)


def _steps(step: float) -> list[float]:
    """Traffic shares after each step of ``step`` (a fraction), the last always 1."""
    count = max(1, _ceil(1.0 / step))
    return [step * (i + 1) for i in range(count - 1)] + [1.0]


def plan(config: dict | None, live: dict, nxt: dict) -> dict:
    """A deployment's plan from its DeploymentConfig (None: blue/green, all at once, no bake)."""
    config = config or {}
    alarms = [a["AlarmName"] for a in (config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
    total = sum(v["count"] for v in nxt["variants"])
    serverless = any(v.get("serverless") for v in live["variants"] + nxt["variants"])
    rolling = config.get("RollingUpdatePolicy")
    if rolling and not serverless:
        return {
            "strategy": "rolling",
            "steps": _steps(capacity_fraction(rolling["MaximumBatchSize"], total)),
            "wait": rolling["WaitIntervalInSeconds"],
            "termination_wait": 0,
            "timeout": rolling.get("MaximumExecutionTimeoutInSeconds"),
            "alarms": alarms,
        }
    policy = config.get("BlueGreenUpdatePolicy") or {}
    routing = policy.get("TrafficRoutingConfiguration") or {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    if serverless:  # as on AWS: serverless variants are deployed all at once, without a bake
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    if routing["Type"] == "CANARY":
        steps = [min(1.0, capacity_fraction(routing["CanarySize"], total)), 1.0]
    elif routing["Type"] == "LINEAR":
        steps = _steps(capacity_fraction(routing["LinearStepSize"], total))
    else:
        steps = [1.0]
    return {
        "strategy": "blue_green",
        "steps": steps,
        "wait": routing["WaitIntervalInSeconds"],
        "termination_wait": policy.get("TerminationWaitInSeconds", 0),
        "timeout": policy.get("MaximumExecutionTimeoutInSeconds"),
        "alarms": alarms,
    }


def _green_count(variant: dict, deploy: dict, step: int) -> int:
    """Green instances of a variant at a step: the whole fleet for blue/green, a growing batch when rolling."""
    if step < 0:
        return 0
    if deploy["strategy"] != "rolling":
        return variant["count"]
    return min(variant["count"], max(1, _ceil(deploy["steps"][step] * variant["count"])))


def green_counts(nxt: dict, deploy: dict) -> dict[str, int]:
    """Group key -> instances of the new fleet at the deployment's current step (shadows: all of them)."""
    counts = {v["key"]: _green_count(v, deploy, deploy["step"]) for v in nxt["variants"]}
    counts.update({v["key"]: v["count"] for v in nxt["shadows"]})
    return counts


def _shifted_step(deploy: dict) -> int:
    """The last step whose traffic shift happened (-1: none yet)."""
    return deploy["step"] if deploy["phase"] in ("bake", "terminate") else deploy["step"] - 1


def blue_counts(live: dict, deploy: dict) -> dict[str, int]:
    """Blue instances per group key while rolling: the old count less the batches already replaced."""
    if deploy["phase"] == "rollback":
        return {v["key"]: v["count"] for v in live["variants"]}
    shifted = _shifted_step(deploy)
    return {v["key"]: max(0, v["count"] - _green_count(v, deploy, shifted)) for v in live["variants"]}


# -- the controller ---------------------------------------------------------------------------------------------


class Step:
    """One reconcile step of one endpoint."""

    def __init__(self, backends: Backends, record: Record):
        self.backends, self.record = backends, record
        self.fleet = fleet(backends)
        self.owners = _owners(backends)

    @property
    def data(self) -> dict:
        return self.record.data

    def commit(self, mutate, touch: bool = True) -> None:
        """Apply ``mutate(data)`` to the stored record, unless an API call changed it meanwhile."""

        def change(fresh: Record, _conn) -> None:
            if fresh.data.get("_rev") != self.data.get("_rev"):
                raise Superseded
            mutate(fresh.data)
            fresh.status = fresh.data["EndpointStatus"]

        fresh = self.backends.resources.mutate(change, arn=self.record.arn, touch=touch)
        if fresh is None:
            raise Superseded
        self.record = fresh

    def ensure(self, variant: dict, count: int | None = None) -> None:
        self.owners[variant["key"]] = self.record.arn
        shipped = self.data.get("_shipped") or {}
        adopt = {
            id_: {**identity, "offset": shipped.get(id_, 0)}
            for id_, identity in (self.data.get("_instances") or {}).get(variant["key"], {}).items()
        }
        self.fleet.ensure(_group(self.record, variant, count), adopt)

    def retire(self, variants: list[dict]) -> None:
        for variant in variants:
            self.fleet.retire(variant["key"])
            self.owners.pop(variant["key"], None)

    def ready(self, variant: dict) -> int:
        return len(self.fleet.ready(variant["key"]))

    def failure(self, variants: list[dict]) -> str | None:
        """Why one of these variants cannot become ready (the fleet's words), if one cannot."""
        return next((reason for v in variants if (reason := self.fleet.failure(v["key"]))), None)

    def note_ready(self, member: str, counts: dict[str, int] | None = None) -> bool:
        """Record each variant's ready instances (CurrentInstanceCount); whether all ``counts`` are ready."""
        variants = _variants(self.data[member])
        counts = {v["key"]: (counts or {}).get(v["key"], v["count"]) for v in variants}
        seen = {v["key"]: min(self.ready(v), counts[v["key"]]) for v in variants}
        if any(v.get("ready") != seen[v["key"]] for v in variants):

            def mutate(d):
                for v in _variants(d[member]):
                    v["ready"] = seen[v["key"]]

            self.commit(mutate, touch=False)
        return all(seen[key] >= count for key, count in counts.items())

    def publish(self) -> None:
        """Publish the Route here, and write down the instances other servers can reach (shared_route)."""
        ready = _ready_here(self.backends, self.record)
        _publish(self.backends, self.record, ready)
        self.share(ready)

    def share(self, ready: dict[str, tuple[str, ...]] | None = None) -> None:
        """Write the ready instances' TCP addresses into the record when they changed (never for Unix sockets)."""
        ready = _ready_here(self.backends, self.record) if ready is None else ready
        reachable = {
            key: tcp for key, found in ready.items() if (tcp := [a for a in found if not connections.is_socket(a)])
        }
        followable = {key: known for key in ready if (known := self.fleet.identities(key))}
        if reachable != self.data.get("_addresses", {}) or followable != self.data.get("_instances", {}):

            def write(d):
                for member, value in (("_addresses", reachable), ("_instances", followable)):
                    if value:
                        d[member] = value
                    else:
                        d.pop(member, None)
                ids = {id_ for known in followable.values() for id_ in known}
                if shipped := {k: v for k, v in (d.get("_shipped") or {}).items() if k in ids}:
                    d["_shipped"] = shipped
                else:
                    d.pop("_shipped", None)

            self.commit(write, touch=False)

    # -- statuses --------------------------------------------------------------------------------

    def run(self) -> float | None:
        status = self.record.status
        if status == "Deleting":
            return self.delete()
        if status == "Creating":
            return self.create()
        if status == "InService":
            return self.serve()
        if status == "UpdateRollbackFailed":
            return self.serve_both()
        if self.data.get("_capacity"):
            return self.resize()
        return self.deploy()

    def create(self) -> float | None:
        live = self.data["_live"]
        variants = _variants(live)
        for variant in variants:
            self.ensure(variant)
        reason = self.failure(variants)
        if reason is None and time.time() > live["started"] + _startup_timeout(live):
            reason = (
                f"The endpoint's instances did not answer the /ping health check within "
                f"{_startup_timeout(live)} seconds."
            )
        if reason:
            self.retire(variants)
            self.commit(lambda d: d.update(EndpointStatus="Failed", FailureReason=reason[:1024]))
            self.publish()
            return None
        if not self.note_ready("_live"):
            return POLL
        deployed = now()

        def in_service(d):
            d["EndpointStatus"] = "InService"
            for v in _variants(d["_live"]):
                v["deployed_at"] = deployed

        self.share()  # first, so every server routes to the instances as soon as the endpoint is InService
        self.commit(in_service)
        self.publish()
        return SERVING_CHECK

    def serve(self) -> float:
        """An InService endpoint: replace dead instances, publish its Route (again, after a restart).

        A variant just scaled in keeps its extra instances, already out of the Route, until
        the drain period ends.
        """
        wait, drained = SERVING_CHECK, []
        for variant in _variants(self.data["_live"]):
            count, drain = variant["count"], variant.get("drain")
            if drain and time.time() < drain["until"]:
                count = max(count, drain["from"])
                wait = min(wait, drain["until"] - time.time())
            elif drain:
                drained.append(variant["key"])
            self.ensure(variant, count)
        if drained:

            def forget(d):
                for v in _variants(d["_live"]):
                    if v["key"] in drained:
                        v.pop("drain", None)

            self.commit(forget, touch=False)
        self.note_ready("_live")
        self.publish()
        return wait

    def delete(self) -> None:
        routes.withdraw(self.backends, self.record.account_id, self.record.region, self.record.name)
        server_metrics(self.backends).forget_endpoint(self.record.account_id, self.record.region, self.record.name)
        for member in ("_live", "_next"):
            if self.data.get(member):
                self.retire(_variants(self.data[member]))
        self.backends.resources.delete(self.record.arn)
        credentials.revoke(self.backends, self.data)  # the instances are gone: so is their key

    def serve_both(self) -> float:
        """UpdateRollbackFailed: both fleets go on serving their shares, as on AWS, until the endpoint is deleted."""
        deploy = self.data["_deploy"]
        self.keep_blue()
        counts = green_counts(self.data["_next"], deploy)
        for variant in _variants(self.data["_next"]):
            self.ensure(variant, counts[variant["key"]])
        self.publish()
        return SERVING_CHECK

    # -- UpdateEndpointWeightsAndCapacities ---------------------------------------------------------

    def resize(self) -> float | None:
        """Start the added instances, wait for them, then route the new weights and counts at once."""
        wanted = self.data["_capacity"]
        variants = self.data["_live"]["variants"]
        counts = {v["key"]: wanted.get(v["name"], {}).get("count", v["count"]) for v in variants}
        growing = [v for v in variants if counts[v["key"]] > v["count"]]
        for variant in growing:
            self.ensure(variant, counts[variant["key"]])
        reason = self.failure(growing)
        if reason:  # back to the old capacity, as a failed update does on AWS
            for variant in growing:
                self.ensure(variant)

            def failed(d):
                d.pop("_capacity", None)
                d.update(EndpointStatus="InService", FailureReason=reason[:1024])

            self.commit(failed)
            return self.serve()
        ready = {v["key"]: self.ready(v) for v in variants}
        if any(ready[v["key"]] < counts[v["key"]] for v in growing):
            return POLL
        moment = now()

        def resized(d):
            for v in d["_live"]["variants"]:
                change = d["_capacity"].get(v["name"])
                if not change:
                    continue
                if change.get("count", v["count"]) < v["count"]:
                    v["drain"] = {"from": v["count"], "until": moment + DRAIN_SECONDS}
                v["count"] = change.get("count", v["count"])
                v["weight"] = change.get("weight", v["weight"])
                v["ready"] = min(ready[v["key"]], v["count"])  # InService shows the new counts at once
                v["deployed_at"] = moment
            d.pop("_capacity")
            d.pop("FailureReason", None)
            d["EndpointStatus"] = "InService"

        self.commit(resized)
        return self.serve()

    # -- UpdateEndpoint: blue/green and rolling ---------------------------------------------------------

    def deploy(self) -> float | None:
        deploy = self.data["_deploy"]
        if deploy["phase"] == "rollback":
            return self.roll_back()
        overdue = deploy["timeout"] and time.time() > deploy["started"] + deploy["timeout"]
        if overdue and deploy["phase"] != "terminate":  # once all traffic is on the new fleet, it stays
            return self.begin_rollback(
                f"The deployment did not finish within MaximumExecutionTimeoutInSeconds ({deploy['timeout']} seconds)."
            )
        if deploy["phase"] == "provision":
            return self.provision()
        if deploy["phase"] == "bake":
            return self.bake()
        return self.terminate()

    def keep_blue(self) -> None:
        """While rolling, the old fleet keeps the instances not yet replaced (all of them otherwise)."""
        deploy, live = self.data["_deploy"], self.data["_live"]
        counts = blue_counts(live, deploy) if deploy["strategy"] == "rolling" else {}
        for variant in _variants(live):
            count = counts.get(variant["key"], variant["count"])
            if count > 0:
                self.ensure(variant, count)
            else:
                self.retire([variant])

    def provision(self) -> float | None:
        """Start the new fleet (when rolling, this step's batch of it), then shift its traffic share to it."""
        deploy, nxt = self.data["_deploy"], self.data["_next"]
        counts = green_counts(nxt, deploy)
        self.keep_blue()
        for variant in _variants(nxt):
            self.ensure(variant, counts[variant["key"]])
        reason = self.failure(_variants(nxt))
        if reason is None and time.time() > deploy["started"] + _startup_timeout(nxt):
            reason = (
                f"The new fleet's instances did not answer the /ping health check within "
                f"{_startup_timeout(nxt)} seconds."
            )
        if reason:
            return self.begin_rollback(reason)
        if not self.note_ready("_next", counts):
            return POLL
        share = deploy["steps"][deploy["step"]]
        if deploy["strategy"] == "rolling":  # the share of instances actually replaced
            share = sum(counts[v["key"]] for v in nxt["variants"]) / max(1, sum(v["count"] for v in nxt["variants"]))
        shifted = now()
        self.commit(lambda d: d["_deploy"].update(phase="bake", share=share, since=shifted))
        self.publish()
        return self.bake()

    def bake(self) -> float | None:
        """Watch the alarms for WaitIntervalInSeconds after a shift; any ALARM rolls everything back."""
        deploy = self.data["_deploy"]
        fired = _alarms_in_alarm(self.backends, self.record, deploy["alarms"])
        if fired:
            return self.begin_rollback(
                f"Deployment rolled back: the CloudWatch alarm(s) {', '.join(fired)} "
                "went into ALARM state during the baking period."
            )
        wait = deploy["wait"]
        counts = green_counts(self.data["_next"], deploy)
        for variant in _variants(self.data["_next"]):  # replaces an instance that died meanwhile
            self.ensure(variant, counts[variant["key"]])
        if deploy["strategy"] == "rolling":  # replaced old instances stop once out of the Route and drained
            wait = max(wait, DRAIN_SECONDS)
        if deploy["strategy"] != "rolling" or time.time() >= deploy["since"] + DRAIN_SECONDS:
            self.keep_blue()
        remaining = deploy["since"] + wait - time.time()
        if remaining > 0:
            return min(1.0, remaining)
        last = deploy["step"] >= len(deploy["steps"]) - 1
        moment = now()

        def advance(d):
            if last:
                d["_deploy"].update(phase="terminate", since=moment)
            else:
                d["_deploy"].update(phase="provision", step=deploy["step"] + 1, since=moment)

        self.commit(advance)
        return 0.0

    def terminate(self) -> float | None:
        """After the last bake and TerminationWaitInSeconds, stop the old fleet: the new one is the endpoint."""
        deploy = self.data["_deploy"]
        remaining = deploy["since"] + max(DRAIN_SECONDS, deploy["termination_wait"]) - time.time()
        if remaining > 0:
            return remaining
        self.retire(_variants(self.data["_live"]))

        def finish(d):
            d["_live"] = d.pop("_next")
            d.pop("_deploy")
            d["EndpointConfigName"] = d["_live"]["config"]
            d["EndpointStatus"] = "InService"
            for v in _variants(d["_live"]):
                v["deployed_at"] = deploy["since"]

        self.commit(finish)
        self.publish()
        return SERVING_CHECK

    # -- rollback -----------------------------------------------------------------------------------------------

    def begin_rollback(self, reason: str) -> float | None:
        log.info("endpoint %s: rolling back: %s", self.record.arn, reason)

        def rolling_back(d):
            d["_deploy"].update(phase="rollback", failure=reason[:1024], switched=None)
            d["EndpointStatus"] = "RollingBack"

        self.commit(rolling_back)
        return self.roll_back()

    def roll_back(self) -> float | None:
        """Make the old fleet whole, route all traffic to it, drain, then stop the new fleet."""
        deploy, live = self.data["_deploy"], self.data["_live"]
        if deploy.get("switched") is None:
            for variant in _variants(live):
                self.ensure(variant)
            reason = self.failure(_variants(live))
            if reason and deploy["share"] > 0:
                self.commit(
                    lambda d: d.update(
                        EndpointStatus="UpdateRollbackFailed",
                        FailureReason=f"{d['_deploy']['failure']} The rollback failed too: {reason}"[:1024],
                    )
                )
                return None
            # Blue must be whole again before it takes back the new fleet's share.
            if not self.note_ready("_live") and deploy["share"] > 0:
                return POLL
            switched = now()
            self.commit(lambda d: d["_deploy"].update(share=0.0, switched=switched))
            self.publish()
            deploy = self.data["_deploy"]
        remaining = deploy["switched"] + DRAIN_SECONDS - time.time()
        if remaining > 0:
            return remaining
        self.retire(_variants(self.data["_next"]))

        def restored(d):
            d["FailureReason"] = d["_deploy"]["failure"]
            d.pop("_next")
            d.pop("_deploy")
            d["EndpointStatus"] = "InService"

        self.commit(restored)
        self.publish()
        return SERVING_CHECK


def _startup_timeout(release: dict) -> int:
    limits = [(v.get("download_timeout") or 0) + (v.get("startup_timeout") or 0) for v in _variants(release)]
    return max(limits) if any(limits) else DEFAULT_STARTUP_TIMEOUT


def _alarms_in_alarm(backends: Backends, record: Record, names: list[str]) -> list[str]:
    if not names:
        return []
    return [name for name in names if alarm_state(backends, record.account_id, record.region, name) == "ALARM"]


def reconcile(backends: Backends, record: Record) -> float | None:
    try:
        return Step(backends, record).run()
    except Superseded:
        return 0.0


register(Controller("Endpoint", ACTIVE, reconcile))
