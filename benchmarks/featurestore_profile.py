"""BatchGetRecord of 100 entities, measured in process: where a batch's server time goes.

    python benchmarks/featurestore_profile.py [--online-store-url redis://...] [--rounds 400] [--profile]

Builds a server's backends on a fresh data directory (no HTTP, no signing), creates
the group benchmarks/featurestore.py reads (1 Integral key, a Fractional event time and
50 features, half Fractional, half Integral), writes 2,000 records with PutRecord, then
times what the server does for one request between the HTTP layer's body and its
response bytes: the body's JSON, input validation, the handler (the online store's read
included) and the response's serialization. Reported: that whole path's p50/p99 for a
BatchGetRecord of 100 random entities and for a GetRecord of one, then the median of
each part of a batch on its own. ``--profile`` adds cProfile's busiest functions.
Run from the repository root: it imports the working tree's selfmaker.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from selfmaker.backends import Backends
from selfmaker.config import Settings
from selfmaker.server import operations
from selfmaker.server.models import operation_model
from selfmaker.server.operations import Context, call
from selfmaker.server.operations import _call as call_handler
from selfmaker.server.protocol import _json_object
from selfmaker.server.serialize import rest_json_response
from selfmaker.server.validate import validate

ACCOUNT, REGION, GROUP = "123456789012", "us-east-1", "bench-fg"
RUNTIME = "sagemaker-featurestore-runtime"
FEATURES, ENTITIES, BATCH = 50, 2000, 100


def build(online_store_url: str | None) -> Context:
    for module in operations.SERVICE_MODULES:
        importlib.import_module(module)
    from selfmaker.services.featurestore import lifecycle

    backends = Backends.build(Settings(data_dir=Path(tempfile.mkdtemp()), online_store_url=online_store_url))
    control = Context(backends, ACCOUNT, REGION, service="sagemaker")
    names = [f"f{i:02d}" for i in range(FEATURES)]
    definitions = [{"FeatureName": "id", "FeatureType": "Integral"}, {"FeatureName": "et", "FeatureType": "Fractional"}]
    definitions += [
        {"FeatureName": n, "FeatureType": "Fractional" if i % 2 else "Integral"} for i, n in enumerate(names)
    ]
    call(
        control,
        "CreateFeatureGroup",
        {
            "FeatureGroupName": GROUP,
            "RecordIdentifierFeatureName": "id",
            "EventTimeFeatureName": "et",
            "FeatureDefinitions": definitions,
            "OnlineStoreConfig": {"EnableOnlineStore": True},
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/R",
        },
    )
    lifecycle.reconcile(backends, backends.resources.get(ACCOUNT, REGION, "FeatureGroup", name=GROUP))  # Created
    ctx = Context(backends, ACCOUNT, REGION, service=RUNTIME)
    rng = random.Random(1)
    for i in range(ENTITIES):
        record = [
            {"FeatureName": "id", "ValueAsString": str(i)},
            {"FeatureName": "et", "ValueAsString": "1700000000.5"},
        ]
        record += [
            {"FeatureName": n, "ValueAsString": repr(rng.random()) if j % 2 else str(rng.randrange(10**9))}
            for j, n in enumerate(names)
        ]
        call(ctx, "PutRecord", {"FeatureGroupName": GROUP, "Record": record})
    return ctx


def median_and_p99(fn, args: list, rounds: int) -> tuple[float, float]:
    times = []
    for k in range(rounds):
        start = time.perf_counter()
        fn(args[k % len(args)])
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--online-store-url", help="redis://host:port/db (default: the embedded store)")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    ctx = build(args.online_store_url)
    batch_op, get_op = operation_model(RUNTIME, "BatchGetRecord"), operation_model(RUNTIME, "GetRecord")
    rng = random.Random(2)
    bodies = [
        json.dumps(
            {
                "Identifiers": [
                    {
                        "FeatureGroupName": GROUP,
                        "RecordIdentifiersValueAsString": [str(i) for i in rng.sample(range(ENTITIES), BATCH)],
                    }
                ]
            }
        ).encode()
        for _ in range(50)
    ]

    loop = asyncio.new_event_loop()  # GetRecord and BatchGetRecord are coroutines (they run on the server's loop)

    def _call(ctx: Context, op, params: dict):
        return loop.run_until_complete(call_handler(ctx, op, params))

    def batch(body: bytes) -> bytes:
        return rest_json_response(_call(ctx, batch_op, _json_object(body)), batch_op.output_shape)[2]

    def get(record_id: str) -> bytes:
        params = {"FeatureGroupName": GROUP, "RecordIdentifierValueAsString": record_id}
        return rest_json_response(_call(ctx, get_op, params), get_op.output_shape)[2]

    answer = json.loads(batch(bodies[0]))
    assert len(answer["Records"]) == BATCH and all(len(r["Record"]) == FEATURES + 2 for r in answer["Records"])
    for body in bodies[:20]:
        batch(body)
    print(f"online store: {args.online_store_url or 'embedded'}")
    p50, p99 = median_and_p99(batch, bodies, args.rounds)
    print(f"BatchGetRecord of {BATCH}, whole path: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    ids = [str(i) for i in range(ENTITIES)]
    p50, p99 = median_and_p99(get, ids, args.rounds * 10)
    print(f"GetRecord, whole path: p50 {p50:.3f} ms, p99 {p99:.3f} ms")

    from selfmaker.services.featurestore.state import feature_store

    fs = feature_store(ctx.backends)
    group = fs.groups.get(ACCOUNT, REGION, GROUP)
    params = _json_object(bodies[0])
    keys = [[str(i) for i in rng.sample(range(ENTITIES), BATCH)] for _ in range(50)]
    result = _call(ctx, batch_op, params)
    parts = {
        "body JSON": lambda _: _json_object(bodies[0]),
        "input validation": lambda _: validate(params, batch_op.input_shape),
        "online store read": lambda k: loop.run_until_complete(fs.online.get_many_async(group.key, k, time.time())),
        "handler (read included)": lambda _: loop.run_until_complete(
            operations.handler_for(RUNTIME, "BatchGetRecord")(ctx, params)
        ),
        "response serialization": lambda _: rest_json_response(result, batch_op.output_shape),
    }
    for name, fn in parts.items():
        print(f"  {name}: {median_and_p99(fn, keys, args.rounds)[0]:.3f} ms p50")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for k in range(200):
            batch(bodies[k % len(bodies)])
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
