"""Endpoint instances (selfmaker/services/hosting/fleet.py), driven in-process on a real data directory.

Each instance is a real sandboxed model server of a built-in XGBoost model in
the suite's XGBoost runtime; requests go over its Unix socket as the router's do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from selfmaker.aws.logs import log_store
from selfmaker.backends import Backends
from selfmaker.config import Settings
from selfmaker.engines import instance_types, model_server
from selfmaker.services.hosting import fleet as fleet_module
from selfmaker.services.hosting.fleet import Fleet, Group, fleet
from support import xgboost_runtime
from support.jobs import tar_gz
from support.waiting import wait_for

ACCOUNT, REGION = "123456789012", "us-east-1"
BUCKET = "models"


def store_models(backends: Backends, model_file: bytes) -> None:
    backends.objects.create_bucket(BUCKET)
    backends.objects.put_object(BUCKET, "xgb/model.tar.gz", tar_gz({"xgboost-model": model_file}))
    backends.objects.put_object(BUCKET, "broken/model.tar.gz", tar_gz({"xgboost-model": b"not a model"}))
    backends.objects.put_object(BUCKET, "garbage.tar.gz", b"not a tar archive")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> bytes:
    directory = tmp_path_factory.mktemp("xgb-model")
    subprocess.run([xgboost_runtime.python(), "-c", xgboost_runtime.MAKE_XGBOOST_MODEL, str(directory)], check=True)
    return (directory / "xgboost-model").read_bytes()


@pytest.fixture(scope="module")
def backends(tmp_path_factory, model_file):
    built = Backends.build(Settings(data_dir=tmp_path_factory.mktemp("fleet") / "data"))
    store_models(built, model_file)
    yield built
    fleet(built).shutdown()
    built.close()


def model(data: str = "xgb/model.tar.gz", image: str = xgboost_runtime.XGBOOST_IMAGE, **extra) -> dict:
    return {"ModelName": "m", "PrimaryContainer": {"Image": image, "ModelDataUrl": f"s3://{BUCKET}/{data}"}, **extra}


def group(key: str, count: int = 1, **model_args) -> Group:
    return Group(
        key=key,
        account_id=ACCOUNT,
        region=REGION,
        endpoint_name=f"ep-{key}",
        variant_name="AllTraffic",
        model=model(**model_args),
        instance_type="ml.m5.large",
        count=count,
    )


def predict(socket: str, body: str = "3,2") -> float:
    connection = model_server.UnixConnection(socket, timeout=10)
    try:
        connection.request(
            "POST", "/invocations", body=body, headers={"Content-Type": "text/csv", "Accept": "text/csv"}
        )
        response = connection.getresponse()
        assert response.status == 200
        return float(response.read())
    finally:
        connection.close()


def instance_dirs(backends: Backends, key: str) -> list[Path]:
    root = backends.settings.data_dir / "endpoints" / ACCOUNT / REGION / key
    return sorted(p for p in root.glob("i-*")) if root.exists() else []


def supervisor(instance_dir: Path) -> int:
    return int((instance_dir / "state" / "pid").read_text().split()[0])


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie left for a slow reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        children.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found += (new := children.get(todo.pop(), []))
        todo += new
    return found


def log_lines(backends: Backends, endpoint: str) -> list[tuple[str, str]]:
    events = log_store.read_events(backends.store, ACCOUNT, REGION, f"/aws/sagemaker/Endpoints/{endpoint}", limit=10000)
    return [(event.stream, event.message) for event in events]


def test_an_instance_serves_and_is_replaced_when_it_dies_or_stops_answering(backends, monkeypatch):
    monkeypatch.setattr(fleet_module, "PING_TIMEOUT", 0.2)  # health checks quick enough for a test
    monkeypatch.setattr(fleet_module, "HEALTH_SECONDS", 0.2)
    f = fleet(backends)
    heard: list[str] = []
    f.subscribe(heard.append)
    f.ensure(group("one"))
    f.ensure(group("one"))  # idempotent
    (socket,) = wait_for(lambda: f.ready("one"))
    assert abs(predict(socket) - 8) < 1
    assert "one" in heard and f.failure("one") is None
    (first,) = instance_dirs(backends, "one")
    assert first.name.startswith("i-") and len(first.name) == 19

    os.killpg(supervisor(first), signal.SIGKILL)  # the instance's whole process tree
    (replacement,) = wait_for(lambda: [s for s in f.ready("one") if s != socket])
    assert abs(predict(replacement) - 8) < 1
    (second,) = instance_dirs(backends, "one")
    assert second.name != first.name and not first.exists()

    lines = wait_for(
        lambda: (
            (lines := log_lines(backends, "ep-one"))
            and any("to replace" in m for _, m in lines)
            and any(s.endswith(second.name) and "is ready" in m for s, m in lines)
            and lines
        )
    )
    streams = {s for s, _ in lines}
    assert streams == {f"AllTraffic/{first.name}", f"AllTraffic/{second.name}"}
    said = [m for s, m in lines if s == f"AllTraffic/{first.name}"]
    assert any("serving the model" in m for m in said)  # the model server's own output
    assert any(f"{first.name} is ready" in m for m in said)
    assert any(f"{first.name} ended" in m and "replacing it" in m for m in said)
    assert any(f"to replace {first.name}" in m for s, m in lines if s.endswith(second.name))

    for pid in descendants(supervisor(second)):  # frozen: it accepts connections and never answers
        os.kill(pid, signal.SIGSTOP)
    (third,) = wait_for(lambda: [s for s in f.ready("one") if s != replacement])
    assert abs(predict(third) - 8) < 1 and not second.exists()
    wait_for(
        lambda: any(
            s.endswith(second.name) and "did not answer /ping 3 health checks in a row" in m
            for s, m in log_lines(backends, "ep-one")
        )
    )

    f.retire("one")
    assert f.ready("one") == () and instance_dirs(backends, "one") == []
    assert not Path(third).exists()


def test_count_grows_and_shrinks(backends):
    f = fleet(backends)
    f.ensure(group("two", count=2, EnableNetworkIsolation=True))
    sockets = wait_for(lambda: len(f.ready("two")) == 2 and f.ready("two"))
    assert len(set(sockets)) == 2 and all(abs(predict(s) - 8) < 1 for s in sockets)
    pids = [supervisor(d) for d in instance_dirs(backends, "two")]
    for pid in pids:  # each server in its sandbox: no network, the instance type's memory
        (server,) = [p for p in descendants(pid) if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"python\0")]
        assert os.readlink(f"/proc/{server}/ns/net") != os.readlink("/proc/self/ns/net")
        data_limit = next(
            line for line in Path(f"/proc/{server}/limits").read_text().splitlines() if line.startswith("Max data size")
        )
        assert data_limit.split()[3] == str(instance_types.limits("ml.m5.large").memory_bytes)

    f.ensure(group("two", count=1))
    (kept,) = wait_for(lambda: len(f.ready("two")) == 1 and f.ready("two"))
    assert kept in sockets
    wait_for(lambda: len(instance_dirs(backends, "two")) == 1 and sum(map(alive, pids)) == 1)

    f.retire("two")
    assert instance_dirs(backends, "two") == [] and not any(map(alive, pids))


@pytest.mark.parametrize(
    "case, expected",
    [
        (
            {"data": "nothing/here.tar.gz"},
            "model data of variant AllTraffic: cannot read s3://models/nothing/here.tar.gz",
        ),
        ({"data": "garbage.tar.gz"}, "is not a tar.gz archive"),
        ({"image": "example.com/unknown:1"}, "SelfMaker has no runtime for the image 'example.com/unknown:1'"),
        ({"data": "broken/model.tar.gz"}, "stopped before answering /ping 3 times in a row"),
    ],
)
def test_a_model_that_cannot_serve_fails_the_group(backends, case, expected):
    f = fleet(backends)
    key = f"bad-{abs(hash(expected)) % 10000}"
    f.ensure(group(key, **case))
    reason = wait_for(lambda: f.failure(key))
    assert expected in reason, reason
    assert f.ready(key) == () and instance_dirs(backends, key) == []  # nothing half-started stays behind
    said = wait_for(lambda: [m for _, m in log_lines(backends, f"ep-{key}") if expected in m])
    assert said  # the reason is in the instance's log stream too
    if "3 times" in reason:  # the model server's own last words are in the reason
        assert "exited with code 1" in reason
    f.retire(key)
    assert f.failure(key) is None


CRASHING_SERVER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from selfmaker.config import Settings
    from selfmaker.backends import Backends
    from selfmaker.services.hosting.fleet import Group, fleet
    backends = Backends.build(Settings(data_dir=Path(sys.argv[1])))
    f = fleet(backends)
    f.ensure(Group(**json.loads(sys.argv[2])))
    while not f.ready(json.loads(sys.argv[2])["key"]):
        time.sleep(0.02)
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_restarted_server_re_attaches_and_a_clean_shutdown_restarts_the_same_instances(tmp_path, model_file):
    data = tmp_path / "data"
    backends = Backends.build(Settings(data_dir=data))
    store_models(backends, model_file)
    spec = group("restart")
    crashing = subprocess.Popen(
        [sys.executable, "-c", CRASHING_SERVER, str(data), json.dumps(spec.__dict__)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert crashing.stdout.readline().strip() == "ready"
    finally:
        crashing.kill()  # a crash: its instances keep serving
        crashing.wait()
    dirs = instance_dirs(backends, "restart")
    pids = [supervisor(d) for d in dirs]
    assert len(dirs) == 1 and all(map(alive, pids))

    restarted = Fleet(backends)
    restarted.ensure(spec)
    sockets = wait_for(lambda: restarted.ready("restart"))
    assert instance_dirs(backends, "restart") == dirs and [supervisor(d) for d in dirs] == pids  # not restarted
    assert all(abs(predict(s) - 8) < 1 for s in sockets)
    wait_for(lambda: sum("re-attached" in m for _, m in log_lines(backends, "ep-restart")) == 1)

    restarted.shutdown()  # a clean stop ends the instances, keeps their directories
    assert not any(map(alive, pids)) and instance_dirs(backends, "restart") == dirs
    again = Fleet(backends)
    again.ensure(spec)
    wait_for(lambda: again.ready("restart"))
    assert instance_dirs(backends, "restart") == dirs  # the same instance ids, started again
    assert all(supervisor(d) not in pids for d in dirs)
    wait_for(lambda: sum("after a server restart (" in m for _, m in log_lines(backends, "ep-restart")) == 1)

    again.shutdown()
    Fleet(backends).retire("restart")  # a server that never ensured the group can still retire it
    assert instance_dirs(backends, "restart") == []
    assert any("retired" in m for _, m in log_lines(backends, "ep-restart"))  # its last lines were shipped
    backends.close()
