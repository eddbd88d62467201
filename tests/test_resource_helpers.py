"""The resource store's shared helpers, in-process: the one read-change-write of a record (``mutate``),
the one NextToken (``page_token``/``read_page_token``), and "already exists" told by the error, not its
words. Every family builds on these; the families' own tests show them through real clients."""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace

import pytest

from selfmaker import services  # noqa: F401  (registers the operations create_once calls)
from selfmaker.server.errors import AWSError
from selfmaker.server.operations import Context
from selfmaker.services.experiments import EXPERIMENT
from selfmaker.services.pipelines.steps import create_once
from selfmaker.store import Store
from selfmaker.store.resources import ResourceStore

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def resources(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('helpers')}/meta.db"
    else:
        import psycopg

        base = request.getfixturevalue("postgres")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "selfmaker_helpers"')
            conn.execute('CREATE DATABASE "selfmaker_helpers"')
        url = base.rsplit("/", 1)[0] + "/selfmaker_helpers"
    store = Store(url)
    yield ResourceStore(store)
    store.close()


def _record(resources: ResourceStore, name: str, data: dict | None = None):
    return resources.create(
        account_id=ACCOUNT,
        region=REGION,
        kind="Thing",
        name=name,
        arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:thing/{name}",
        data={"LastModifiedTime": 0, **(data or {})},
        status="Active",
    )


# -- mutate -------------------------------------------------------------------------------------------------


def test_concurrent_changes_are_all_kept(resources):
    """Two writers changing one record at once lose nothing: each change sees the other's (on PostgreSQL,
    too, where no process-wide lock serializes writers)."""
    arn = _record(resources, "counted", {"n": 0}).arn
    rounds = 25

    def bump(record, _conn):
        record.data["n"] += 1

    def writer():
        for _ in range(rounds):
            resources.mutate(bump, arn=arn)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert resources.get_by_arn(arn).data["n"] == 4 * rounds


def test_change_sees_the_stored_record_and_stamps_one_time(resources):
    record = _record(resources, "stamped", {"Status": "InProgress"})
    stale = resources.get_by_arn(record.arn)
    resources.mutate(lambda r, _c: r.data.update(Status="Stopping"), arn=record.arn)  # a Stop lands

    def progress(fresh, _conn):  # the reconciler, holding the stale copy, reports progress
        assert fresh.data["Status"] == "Stopping"
        fresh.data["Progress"] = 1

    written = resources.mutate(progress, arn=stale.arn)
    stored = resources.get_by_arn(record.arn)
    assert stored.data == written.data and stored.data["Status"] == "Stopping" and stored.data["Progress"] == 1
    assert stored.modified_at == stored.data["LastModifiedTime"] > record.modified_at


def test_change_can_decline_or_abort(resources):
    record = _record(resources, "declined", {"Status": "Created"})
    assert (
        resources.mutate(lambda r, _c: False, account_id=ACCOUNT, region=REGION, kind="Thing", name="DECLINED").data
        == record.data
    )  # found by name, case-insensitively
    assert resources.get_by_arn(record.arn).modified_at == record.modified_at  # nothing written

    def half_done(fresh, conn):
        fresh.data["Status"] = "Deleted"
        resources.delete(record.arn, conn=conn)  # more work in the same transaction...
        raise RuntimeError("...then the change finds it no longer applies")

    with pytest.raises(RuntimeError):
        resources.mutate(half_done, arn=record.arn)
    assert resources.get_by_arn(record.arn).data["Status"] == "Created"  # all of it undone
    assert resources.mutate(lambda r, _c: None, arn=record.arn + "-missing") is None


def _context(resources: ResourceStore) -> Context:
    return Context(
        backends=SimpleNamespace(store=resources.store, resources=resources, authenticator=None),
        account_id=ACCOUNT,
        region=REGION,
        service="sagemaker",
    )


def test_a_request_holds_the_row_it_reads_then_saves(resources):
    """A reconciler's mutate arriving between an Update's read and its save waits for the Update to commit,
    then builds on it: neither change is lost (on PostgreSQL the row lock does this, on SQLite the store's
    write lock)."""
    ctx = _context(resources)
    arn = EXPERIMENT.create(ctx, {"ExperimentName": "raced"})["ExperimentArn"]
    read, mutated = threading.Event(), threading.Event()

    def on_update(ctx, params, record):  # between the Update's read and its save
        record.data["Description"] = params["Description"]
        read.set()
        mutated.wait(0.5)  # the reconciler's change cannot commit meanwhile: this waits out its timeout

    def reconciler():
        assert read.wait(5)
        resources.mutate(lambda record, _conn: record.data.update(Progress=1), arn=arn)
        mutated.set()

    thread = threading.Thread(target=reconciler)
    thread.start()
    dataclasses.replace(EXPERIMENT, on_update=on_update).update(ctx, {"ExperimentName": "raced", "Description": "d"})
    thread.join(10)
    stored = resources.get_by_arn(arn)
    assert stored.data["Description"] == "d" and stored.data["Progress"] == 1


def test_a_locked_read_needs_the_transaction_it_is_saved_in(resources):
    with pytest.raises(ValueError):
        resources.get(ACCOUNT, REGION, "Thing", name="anything", lock=True)


# -- NextToken ------------------------------------------------------------------------------------------------


def test_page_token_is_bound_to_its_list(resources):
    token = resources.page_token(["ListTags", "arn:one"], after=3)
    assert resources.read_page_token(token, ["ListTags", "arn:one"]) == {"after": 3}
    refusal = AWSError("InvalidNextToken", "The NextToken is not valid for this request.")
    for scope, bad in (
        (["ListTags", "arn:two"], token),  # another list's token
        (["ListTags", "arn:one"], token[:-2] + ("AA" if token[-2:] != "AA" else "BB")),  # altered
        (["ListTags", "arn:one"], "not a token"),
    ):
        with pytest.raises(AWSError) as err:
            resources.read_page_token(bad, scope, refusal)
        assert err.value is refusal
        with pytest.raises(AWSError) as err:  # without the service's own refusal: SageMaker's
            resources.read_page_token(bad, scope)
        assert (err.value.code, err.value.message.split(":")[0]) == ("ValidationException", "Invalid pagination token")


def test_page_token_scope_ignores_key_order(resources):
    token = resources.page_token({"a": 1, "b": [1, 2]}, o=10)
    assert resources.read_page_token(token, {"b": [1, 2], "a": 1}) == {"o": 10}


# -- "already exists" is the error's, not its words' ----------------------------------------------------------


def test_already_exists_is_flagged_and_create_once_relies_on_it(resources):
    ctx = _context(resources)
    EXPERIMENT.create(ctx, {"ExperimentName": "made-once"})
    with pytest.raises(AWSError) as err:
        EXPERIMENT.create(ctx, {"ExperimentName": "made-once"})
    assert err.value.exists and err.value.code == "ValidationException"

    create_once(ctx, "CreateExperiment", {"ExperimentName": "made-once"})  # there already: counts as made
    with pytest.raises(AWSError) as err:  # any other refusal still stops it
        create_once(ctx, "CreateTrial", {"TrialName": "t", "ExperimentName": "never-made"})
    assert not err.value.exists
