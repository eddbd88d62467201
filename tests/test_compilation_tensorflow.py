"""KERAS, TFLITE and TENSORFLOW compilation jobs, with TensorFlow added to the compilation image by a runtimes config as
docs/compilation.md tells: each model (a Keras .h5, a TFLite flatbuffer, a SavedModel directory, a frozen graph) is
converted to ONNX by tf2onnx, its accuracy checked in the job against TensorFlow's own answers, and the compiled Keras
model served by the plain inference image, which has no TensorFlow.

One runtime (tensorflow-cpu 2.21 + tf2onnx 1.17, ~1.7 GB, ~2 min to build) serves the three frameworks: the image
pattern ``compile-[kt]*`` matches keras, tflite and tensorflow. Where it cannot be installed the module is skipped,
except in CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from support.clients import make_client
from support.endpoints import deploy, variant
from support.jobs import FIRST_JOB_SECONDS, ROLE, log_lines, tar_gz
from support.waiting import status_in, wait_for

COMPILE_IMAGE = "*/selfmaker-neo:1.0-compile-[kt]*"  # keras, tflite, tensorflow: one runtime, built once
PACKAGES = ["numpy", "onnx", "onnxruntime", "tensorflow-cpu==2.21.*", "tf2onnx==1.17.*"]
BUCKET = "tf-compilation"
GROUP = "/aws/sagemaker/CompilationJobs"
ROWS = [[0.1, 0.9, 0.3, 0.5], [0.8, 0.2, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5]]
# Run in the TensorFlow runtime: a small Keras MLP saved every way Neo took a TensorFlow-family model, a small
# channel-last CNN, and what Keras itself answers for ROWS.
MAKE_MODELS = """
import json, os, sys
import numpy as np, tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
out, rows = sys.argv[1], np.array(json.loads(sys.argv[2]), dtype=np.float32)
tf.random.set_seed(0)
Dense = tf.keras.layers.Dense
mlp = tf.keras.Sequential([tf.keras.Input((4,), name="input_1"), Dense(16, activation="relu"), Dense(2)])
mlp.save(f"{out}/mlp.h5")
conv = tf.keras.Sequential([
    tf.keras.Input((8, 8, 3), name="input_1"), tf.keras.layers.Conv2D(4, 3, activation="relu"),
    tf.keras.layers.GlobalAveragePooling2D(), Dense(2)])
conv.save(f"{out}/conv.h5")
open(f"{out}/mlp.tflite", "wb").write(tf.lite.TFLiteConverter.from_keras_model(mlp).convert())
mlp.export(f"{out}/saved_model", verbose=False)
forward = tf.function(lambda x: mlp(x), input_signature=[tf.TensorSpec([None, 4], tf.float32, name="input")])
frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
tf.io.write_graph(frozen.graph.as_graph_def(), out, "frozen.pb", as_text=False)
tf.io.write_graph(forward.get_concrete_function().graph.as_graph_def(), out, "unfrozen.pb", as_text=False)
pair = tf.function(lambda x: (x * 2, x + 1), input_signature=[tf.TensorSpec([None, 4], tf.float32, name="input")])
tf.io.write_graph(pair.get_concrete_function().graph.as_graph_def(), out, "pair.pbtxt", as_text=True)
print(json.dumps(mlp(rows).numpy().tolist()))
"""
# name: (Framework, model key, DataInputConfig, CompilerOptions or None)
COMPILED = {
    "tf-keras": ("KERAS", "keras", {"input_1": [3, 4]}, None),
    "tf-keras-cnn": ("KERAS", "conv", {"input_1": [2, 3, 8, 8]}, None),  # NCHW, as Neo took Keras shapes
    "tf-tflite": ("TFLITE", "tflite", {"input": [3, 4]}, None),
    "tf-savedmodel": ("TENSORFLOW", "savedmodel", {"input_1": [3, 4]}, None),
    "tf-frozen": ("TENSORFLOW", "frozen", {"input:0": [3, 4]}, None),
    "tf-frozen-cut": ("TENSORFLOW", "pair", {"input": [3, 4]}, {"output_names": ["add:0"]}),  # Neo's option
}
FAILED = {
    "tf-keras-nhwc": (
        ("KERAS", "conv", {"input_1": [2, 8, 8, 3]}, None),
        "ClientError: InputConfiguration: Input shapes should be provided in NCHW format",
    ),
    "tf-frozen-name": (
        ("TENSORFLOW", "frozen", {"x": [3, 4], "y": [3, 4]}, None),
        "ClientError: InputConfiguration: DataInputConfig names an input the model does not have: 'x'",
    ),
    "tf-unfrozen": (
        ("TENSORFLOW", "unfrozen", {"input": [3, 4]}, None),
        "ClientError: InputConfiguration: graph.pb is not a frozen graph: it reads variables",
    ),
    "tf-two-ends": (
        ("TENSORFLOW", "pair", {"input": [3, 4]}, None),
        "ClientError: InputConfiguration: cannot tell the frozen graph's output: 2 nodes end it",
    ),
    "tf-savedmodel-signature": (
        ("TENSORFLOW", "savedmodel", {"input_1": [3, 4]}, {"signature_def_key": "nope"}),
        "ClientError: InputConfiguration: the SavedModel has no signature 'nope'",
    ),
}


@pytest.fixture(scope="module")
def tf_python(tmp_path_factory):
    """The TensorFlow compilation runtime's interpreter, built here once (the server's jobs then find it ready)."""
    from selfmaker.engines import runtimes

    config = tmp_path_factory.mktemp("tf-config") / "runtimes.json"
    config.write_text(json.dumps({"images": {COMPILE_IMAGE: {"packages": PACKAGES}}}))
    image = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{runtimes.NEO_REPOSITORY}:1.0-compile-keras"
    runtime = runtimes.resolve(image, runtimes.load_config(config))
    try:
        bin_dir = runtimes.ensure(runtime, Path(os.environ["SELFMAKER_RUNTIMES_DIR"]), lambda line: None)
    except runtimes.RuntimeBuildError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"tensorflow-cpu and tf2onnx do not install on this machine: {err}")
    return bin_dir / "python", config


@pytest.fixture(scope="module")
def tf_server(make_server, tf_python):
    _, config = tf_python
    return make_server("tensorflow", ["--runtimes-config", str(config)]).start()


@pytest.fixture(scope="module")
def keras_answers(tf_server, tf_python, tmp_path_factory):
    """Every model in S3, and what Keras itself answers for ROWS."""
    python, _ = tf_python
    out = tmp_path_factory.mktemp("tf-models")
    made = subprocess.run(
        [str(python), "-c", MAKE_MODELS, str(out), json.dumps(ROWS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert made.returncode == 0, made.stderr[-3000:]
    saved = out / "saved_model"
    archives = {
        "keras": {"model.h5": (out / "mlp.h5").read_bytes()},
        "conv": {"model.h5": (out / "conv.h5").read_bytes()},
        "tflite": {"model.tflite": (out / "mlp.tflite").read_bytes()},
        "savedmodel": {p.relative_to(saved).as_posix(): p.read_bytes() for p in saved.rglob("*") if p.is_file()},
        "frozen": {"frozen_graph.pb": (out / "frozen.pb").read_bytes()},
        "unfrozen": {"graph.pb": (out / "unfrozen.pb").read_bytes()},
        "pair": {"graph.pbtxt": (out / "pair.pbtxt").read_bytes()},
    }
    assert "saved_model.pb" in archives["savedmodel"] and "variables/variables.index" in archives["savedmodel"]
    s3 = make_client("s3", tf_server.url)
    s3.create_bucket(Bucket=BUCKET)
    for key, files in archives.items():
        s3.put_object(Bucket=BUCKET, Key=f"{key}/model.tar.gz", Body=tar_gz(files))
    return json.loads(made.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jobs(tf_server, keras_answers):
    """Every job created at once (they run side by side), then each one's final Describe."""
    sm = make_client("sagemaker", tf_server.url)
    every = {**COMPILED, **{name: request for name, (request, _) in FAILED.items()}}
    for name, (framework, key, shapes, options) in every.items():
        output = {"S3OutputLocation": f"s3://{BUCKET}/compiled/{name}", "TargetDevice": "ml_c5"}
        if options:
            output["CompilerOptions"] = json.dumps(options)
        sm.create_compilation_job(
            CompilationJobName=name,
            RoleArn=ROLE,
            InputConfig={
                "S3Uri": f"s3://{BUCKET}/{key}/model.tar.gz",
                "Framework": framework,
                "DataInputConfig": json.dumps(shapes),
            },
            OutputConfig=output,
            StoppingCondition={"MaxRuntimeInSeconds": 900},
        )
    return {
        name: wait_for(
            lambda name=name: sm.describe_compilation_job(CompilationJobName=name),
            status_in("CompilationJobStatus", ("COMPLETED", "FAILED", "STOPPED")),
            timeout=FIRST_JOB_SECONDS,
            what=f"the compilation job {name}",
        )
        for name in every
    }


def test_each_model_compiles_and_agrees_with_tensorflow(tf_server, jobs):
    logs = make_client("logs", tf_server.url)
    for name in COMPILED:
        done = jobs[name]
        assert done["CompilationJobStatus"] == "COMPLETED", (name, done.get("FailureReason"))
        assert done["InferenceImage"].endswith("/selfmaker-neo:1.0-inference-cpu-py3")
        # The job ran TensorFlow's own model (Keras, the TFLite interpreter, the signature, the imported graph) on
        # sample inputs of the declared shapes, and the compiled model: their answers are logged side by side.
        lines = log_lines(logs, GROUP, name)
        errors = [re.search(r"max absolute error (\S+)", line) for line in lines]
        found = [float(e.group(1)) for e in errors if e]
        assert found and found[0] < 1e-4, (name, lines[-8:])


def test_mistakes_fail_with_the_reason(jobs):
    for name, (_, reason) in FAILED.items():
        assert jobs[name]["CompilationJobStatus"] == "FAILED"
        assert jobs[name]["FailureReason"].startswith(reason), (name, jobs[name]["FailureReason"])


def test_compiled_keras_model_serves_without_tensorflow(tf_server, jobs, keras_answers):
    sm = make_client("sagemaker", tf_server.url)
    done = jobs["tf-keras"]
    assert done["CompilationJobStatus"] == "COMPLETED", done.get("FailureReason")
    sm.create_model(
        ModelName="tf-keras",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": done["InferenceImage"], "ModelDataUrl": done["ModelArtifacts"]["S3ModelArtifacts"]},
    )
    assert deploy(sm, "tf-keras", [variant("tf-keras")])["EndpointStatus"] == "InService"
    runtime = make_client("sagemaker-runtime", tf_server.url)
    for rows, expected in ((ROWS, keras_answers), (ROWS[:1], keras_answers[:1])):  # the batch dimension is free
        answer = runtime.invoke_endpoint(
            EndpointName="tf-keras", Body=json.dumps(rows), ContentType="application/json", Accept="application/json"
        )
        got = json.loads(answer["Body"].read())
        got = got.get("predictions", got) if isinstance(got, dict) else got
        assert np.asarray(got) == pytest.approx(np.asarray(expected), abs=1e-5)
