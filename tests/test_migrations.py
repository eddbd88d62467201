"""Schema migrations upgrade a database the previous release made, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from conftest import ACCOUNT, REGION, Server

from selfmaker.store.db import MIGRATIONS, make_engine
from support.clients import make_client

pytestmark = pytest.mark.both_databases


def _migrate(url: str, revision: str, step=command.upgrade) -> None:
    engine = make_engine(url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        step(config, revision)
    engine.dispose()


def _sqs(srv: Server):
    return make_client("sqs", srv.url, access_key="AKIDEXAMPLE", secret_key="secret", region=REGION)


def test_sqs_tags_move_into_the_common_tag_store(database, tmp_path):
    url = database("migrate_sqs_tags") or f"sqlite:///{tmp_path / 'old.db'}"
    _migrate(url, "0001")  # the schema of the release before SQS tags moved
    engine = make_engine(url)
    queues = sa.table(
        "sqs_queues",
        *[sa.column(c) for c in ("account_id", "region", "name", "created_at", "modified_at")],
        sa.column("attributes", sa.JSON),
        sa.column("tags", sa.JSON),
    )
    with engine.begin() as conn:
        for name, tags in [("tagged", {"team": "ml", "env": "prod", "long": "v" * 300}), ("plain", {})]:
            conn.execute(
                queues.insert().values(
                    account_id=ACCOUNT,
                    region=REGION,
                    name=name,
                    created_at=1.0,
                    modified_at=1.0,
                    attributes={},
                    tags=tags,
                )
            )
    engine.dispose()

    srv = Server(tmp_path / "data", url).start()  # the server migrates its database at start
    try:
        sqs = _sqs(srv)
        tagged = sqs.get_queue_url(QueueName="tagged")["QueueUrl"]
        # The tags that fit the store kept their values and order; the over-long one could not be kept.
        assert list(sqs.list_queue_tags(QueueUrl=tagged)["Tags"].items()) == [("team", "ml"), ("env", "prod")]
        assert sqs.list_queue_tags(QueueUrl=sqs.get_queue_url(QueueName="plain")["QueueUrl"])["Tags"] == {}
        sqs.tag_queue(QueueUrl=tagged, Tags={"env": "dev", "owner": "ana"})
        sqs.untag_queue(QueueUrl=tagged, TagKeys=["team"])
        assert sqs.list_queue_tags(QueueUrl=tagged)["Tags"] == {"env": "dev", "owner": "ana"}
    finally:
        srv.stop()
    engine = make_engine(url)
    try:
        assert "tags" not in {c["name"] for c in sa.inspect(engine).get_columns("sqs_queues")}
    finally:
        engine.dispose()

    # Downgrading gives the queues their tags back, in their column.
    _migrate(url, "0001", command.downgrade)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.select(queues.c.name, queues.c.tags)).all())
            left = conn.execute(sa.text("SELECT count(*) FROM tags WHERE arn LIKE 'arn:aws:sqs:%'")).scalar_one()
    finally:
        engine.dispose()
    assert rows == {"tagged": {"env": "dev", "owner": "ana"}, "plain": {}} and left == 0
