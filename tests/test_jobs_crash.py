"""Crash safety: SIGKILL the server while jobs run; after a restart none stays InProgress."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from support.jobs import code_archive, training_request, wait, wait_for_log


def _pids(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_jobs_are_followed_or_failed_after_a_sigkill(make_server, client, unique):
    server = make_server("jobs-crash").start()
    s3, sm = client("s3", server), client("sagemaker", server)
    bucket = unique("crash")
    s3.create_bucket(Bucket=bucket)
    marker = f"sleep 611.{int(time.time() * 1000) % 100000}"
    scripts = {
        # ends while the server is down: its exit status is read from disk after the restart
        "ends-while-down": "import os, time\nprint('working', flush=True)\ntime.sleep(2)\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'm'), 'w').write('m')\n",
        # still running at the restart: re-attached and followed to its end
        "outlives-restart": "import os, time\nprint('working', flush=True)\ntime.sleep(8)\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'm'), 'w').write('m')\n",
        # its processes are killed while the server is down: no exit status, so it fails, saying why
        "vanishes": f"import subprocess\nprint('working', flush=True)\nsubprocess.run(['/bin/sh', '-c', '{marker}'])\n",
    }
    names = {}
    for label, script in scripts.items():
        key = f"code/{label}.tar.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=code_archive({"train.py": script}))
        names[label] = unique(label)
        sm.create_training_job(**training_request(names[label], bucket, key))
    logs = client("logs", server)
    for name in names.values():  # every job's script has started
        wait_for_log(logs, "/aws/sagemaker/TrainingJobs", name, "working")
    server.kill()
    # The instance's supervisor leads its process group: killing the group leaves no exit status behind.
    pid_file = next(server.data_dir.glob(f"jobs/*/*/training-job/{names['vanishes']}/algo-1/state/pid"))
    os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    time.sleep(3)
    server.start()
    sm = client("sagemaker", server)
    ended = wait(sm, "training", names["ends-while-down"], timeout=30)
    assert ended["TrainingJobStatus"] == "Completed", ended.get("FailureReason")
    assert ended["ModelArtifacts"]["S3ModelArtifacts"].endswith(f"{names['ends-while-down']}/output/model.tar.gz")
    outlived = wait(sm, "training", names["outlives-restart"], timeout=30)
    assert outlived["TrainingJobStatus"] == "Completed", outlived.get("FailureReason")
    vanished = wait(sm, "training", names["vanishes"], timeout=30)
    assert vanished["TrainingJobStatus"] == "Failed"
    assert "ended abnormally" in vanished["FailureReason"]
    assert "without reporting an exit status" in vanished["FailureReason"]
    time.sleep(0.3)
    assert not _pids(marker)
    assert "ModelArtifacts" not in vanished or not vanished["ModelArtifacts"]["S3ModelArtifacts"]
    server.stop()
