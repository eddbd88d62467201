"""The delivery worker: outbox events matched against their bus's rules, then delivered to the targets.

Two persisted steps, so delivery is at-least-once and survives a restart:

1. **fan-out**: in one transaction, an outbox event is matched against the enabled rules of its own
   account's bus (never another account's) and becomes one ``events_deliveries`` row per target of
   each matching rule, and leaves the outbox;
2. **delivery**: each due row is delivered (SQS message, StartPipelineExecution) and deleted once
   the target took it. A failure is retried with backoff (1 s doubling to 5 min) within the target's
   RetryPolicy (AWS's defaults: 185 attempts, 24 hours), then given up and logged. A crash between
   a delivery and its row's deletion delivers it again: SQS gets a duplicate (as on AWS), a pipeline
   does not (the request's ClientRequestToken names the same execution).
"""

from __future__ import annotations

import json
import logging
import time

from sqlalchemy import delete, select, update

from ...backends import background_worker
from ...engines.leases import leases
from ...engines.periodic import Periodic
from ...errors import AWSError
from ...server.operations import Context, call
from ...store import schema
from ..sqs.messages import send_message
from ..sqs.queues import queue_url
from . import outbox
from .pattern import matches
from .rules import rules_of_bus
from .targets import SQS_ARN, message_body, pipeline_request, retry_limits, target_kind

log = logging.getLogger("selfmaker.events")

OUTBOX, D = schema.events_outbox, schema.events_deliveries
BATCH = 100
INTERVAL = 1.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 300.0


class Delivery(Periodic):
    def __init__(self, backends):
        super().__init__("events-delivery", INTERVAL, run_at_start=True, final_run=False)
        self.backends = backends

    def run(self) -> float | None:
        # One server delivers (several would deliver each row more than once); the others stand by.
        return leases(self.backends).as_leader("events-delivery", self._run)

    def _run(self) -> float | None:
        fanned = self.fan_out()
        delivered = self.deliver_due()
        return 0.0 if fanned == BATCH or delivered == BATCH else None

    # -- 1. fan-out ------------------------------------------------------------------------

    def fan_out(self) -> int:
        store = self.backends.store
        with store.write() as conn:
            rows = conn.execute(select(OUTBOX).order_by(OUTBOX.c.id).limit(BATCH)).all()
            rules: dict[tuple, list] = {}
            now = time.time()
            for row in rows:
                key = (row.account_id, row.region, row.bus)
                if key not in rules:
                    rules[key] = rules_of_bus(conn, *key)
                event = json.loads(row.event)
                for rule_arn, pattern, targets in rules[key]:
                    if not matches(pattern, event):
                        continue
                    for target in targets:
                        conn.execute(
                            D.insert().values(
                                account_id=row.account_id,
                                region=row.region,
                                rule_arn=rule_arn,
                                target=target,
                                event=row.event,
                                attempts=0,
                                next_at=now,
                                created_at=now,
                            )
                        )
            if rows:
                conn.execute(delete(OUTBOX).where(OUTBOX.c.id.in_([r.id for r in rows])))
        return len(rows)

    # -- 2. delivery -----------------------------------------------------------------------

    def deliver_due(self) -> int:
        store = self.backends.store
        with store.read() as conn:
            rows = conn.execute(select(D).where(D.c.next_at <= time.time()).order_by(D.c.id).limit(BATCH)).all()
        for row in rows:
            if self.stopping:
                break
            try:
                self._deliver(row)
            except AWSError as err:
                self._failed(row, f"{err.code}: {err.message}")
            except Exception as err:  # a target's failure must not stop the others' deliveries
                log.exception("delivering an event to %s failed", row.target.get("Arn"))
                self._failed(row, repr(err))
            else:
                with store.write() as conn:
                    conn.execute(delete(D).where(D.c.id == row.id))
        return len(rows)

    def _deliver(self, row) -> None:
        target = row.target
        event = json.loads(row.event)
        if target_kind(target["Arn"]) == "sqs":
            name = SQS_ARN.fullmatch(target["Arn"])["name"]
            url = queue_url(self.backends.settings.endpoint_url, row.account_id, name)
            send_message(
                self.backends, row.account_id, row.region, url, message_body(target, event, row.event, row.rule_arn)
            )
        else:
            ctx = Context(self.backends, row.account_id, row.region, service="sagemaker")
            call(ctx, "StartPipelineExecution", pipeline_request(target, event, row.event, row.rule_arn))

    def _failed(self, row, reason: str) -> None:
        attempts = row.attempts + 1
        most_attempts, most_age = retry_limits(row.target)
        age = time.time() - row.created_at
        with self.backends.store.write() as conn:
            if attempts > most_attempts or age >= most_age:
                log.warning(
                    "event delivery to %s (rule %s) given up after %d attempts: %s",
                    row.target.get("Arn"),
                    row.rule_arn,
                    attempts,
                    reason,
                )
                conn.execute(delete(D).where(D.c.id == row.id))
                return
            wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempts - 1))
            conn.execute(update(D).where(D.c.id == row.id).values(attempts=attempts, next_at=time.time() + wait))
        log.info(
            "event delivery to %s failed (%s); attempt %d again in %.0f s",
            row.target.get("Arn"),
            reason,
            attempts + 1,
            wait,
        )


def delivery(backends) -> Delivery:
    return backends.shared("events.delivery", lambda: Delivery(backends))


@background_worker
def _start_delivery(backends) -> Delivery:
    worker = delivery(backends)
    outbox._WAKERS[:] = [worker.wake]
    return worker
