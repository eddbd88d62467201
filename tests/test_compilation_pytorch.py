"""A PyTorch compilation job, with torch added to the compilation image by a runtimes config as docs/compilation.md
tells: the TorchScript model is converted to ONNX, its accuracy checked, and the compiled model served by the
plain inference image, which has no torch.

torch==2.13.0 is the CPU build this machine kind keeps on disk (pip takes it from there); elsewhere pip would
fetch a CUDA build of several GB, so the test is skipped when that file is absent, except in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support.clients import make_client
from support.endpoints import deploy, variant
from support.jobs import FIRST_JOB_SECONDS, ROLE, log_lines, tar_gz
from support.waiting import status_in, wait_for

TORCH = "torch==2.13.0"
COMPILE_IMAGE = "*/selfmaker-neo:1.0-compile-pytorch"
PACKAGES = ["numpy", "onnx", "onnxruntime", TORCH]
BUCKET = "torch-compilation"
ROWS = [[0.1, 0.9, 0.3, 0.5], [0.8, 0.2, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5]]
# Run in the torch runtime: a small TorchScript MLP, and what torch itself answers for ROWS.
MAKE_MODEL = """
import json, sys, torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
torch.jit.trace(net, torch.zeros(1, 4)).save(sys.argv[1])
with torch.no_grad():
    print(json.dumps(net(torch.tensor(json.loads(sys.argv[2]))).tolist()))
"""

if not any(Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl")) and not os.environ.get("CI"):
    pytest.skip("torch 2.13.0's CPU build is not on this machine's disk (/opt/wheels)", allow_module_level=True)


@pytest.fixture(scope="module")
def torch_server(make_server, tmp_path_factory):
    config = tmp_path_factory.mktemp("torch-config") / "runtimes.json"
    config.write_text(json.dumps({"images": {COMPILE_IMAGE: {"packages": PACKAGES}}}))
    return make_server("torch", ["--runtimes-config", str(config)]).start(), config


@pytest.fixture(scope="module")
def torch_model(torch_server, tmp_path_factory):
    """The TorchScript model in S3 and torch's own answers, made in the runtime the server's job uses."""
    from selfmaker.engines import runtimes

    server, config = torch_server
    image = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{runtimes.NEO_REPOSITORY}:1.0-compile-pytorch"
    runtime = runtimes.resolve(image, runtimes.load_config(config))
    python = runtimes.ensure(runtime, Path(os.environ["SELFMAKER_RUNTIMES_DIR"]), lambda line: None) / "python"
    path = tmp_path_factory.mktemp("torch-model") / "model.pth"
    made = subprocess.run(
        [str(python), "-c", MAKE_MODEL, str(path), json.dumps(ROWS)], capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr
    s3 = make_client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="mlp/model.tar.gz", Body=tar_gz({"model.pth": path.read_bytes()}))
    return json.loads(made.stdout.strip().splitlines()[-1])


def test_pytorch_compiles_and_serves_without_torch(torch_server, torch_model):
    server, _ = torch_server
    sm = make_client("sagemaker", server.url)
    sm.create_compilation_job(
        CompilationJobName="mlp-torch",
        RoleArn=ROLE,
        InputConfig={
            "S3Uri": f"s3://{BUCKET}/mlp/model.tar.gz",
            "Framework": "PYTORCH",
            "DataInputConfig": '{"input0": [1, 4]}',
            "FrameworkVersion": "2.0",
        },
        OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/compiled", "TargetDevice": "ml_c5"},
        StoppingCondition={"MaxRuntimeInSeconds": 900},
    )
    done = wait_for(
        lambda: sm.describe_compilation_job(CompilationJobName="mlp-torch"),
        status_in("CompilationJobStatus", ("COMPLETED", "FAILED", "STOPPED")),
        timeout=FIRST_JOB_SECONDS,
        what="the PyTorch compilation job",
    )
    assert done["CompilationJobStatus"] == "COMPLETED", done.get("FailureReason")
    lines = log_lines(make_client("logs", server.url), "/aws/sagemaker/CompilationJobs", "mlp-torch")
    accuracy = [line for line in lines if "max relative error" in line]
    assert accuracy, lines[-10:]

    # The compiled artifact is ONNX: the inference image (no torch in it) serves it, any number of rows.
    sm.create_model(
        ModelName="mlp-torch",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": done["InferenceImage"], "ModelDataUrl": done["ModelArtifacts"]["S3ModelArtifacts"]},
    )
    assert deploy(sm, "mlp-torch", [variant("mlp-torch")])["EndpointStatus"] == "InService"
    answer = make_client("sagemaker-runtime", server.url).invoke_endpoint(
        EndpointName="mlp-torch",
        Body=json.dumps(ROWS),
        ContentType="application/json",
        Accept="application/json",
    )
    got = json.loads(answer["Body"].read())
    got = got.get("predictions", got) if isinstance(got, dict) else got
    assert len(got) == len(ROWS)
    for answered, expected in zip(got, torch_model, strict=True):
        assert answered == pytest.approx(expected, abs=1e-5)
