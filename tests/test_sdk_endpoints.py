"""Endpoints through the real SageMaker SDK: v2 Model.deploy() + Predictor.predict() for the built-in XGBoost
image and a scikit-learn script-mode model, and v3 Endpoint.invoke."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from selfmaker.engines import runtimes
from support.endpoints import BUCKET, Models, xgboost_model_archive
from support.jobs import SKLEARN_IMAGE, tar_gz
from support.xgboost_runtime import MAKE_SKLEARN_MODEL

# SDK v2 polls a new endpoint every 30 s; the tests poll every half second (their only change to the SDK).
FAST_V2_WAIT = """
    from sagemaker.session import Session
    _wait_for_endpoint = Session.wait_for_endpoint
    Session.wait_for_endpoint = lambda self, endpoint, poll=30, live_logging=False: _wait_for_endpoint(
        self, endpoint, poll=0.5, live_logging=live_logging)
"""


@pytest.fixture(scope="module")
def models(server, tmp_path_factory):
    return Models(server, tmp_path_factory.mktemp("sdk-endpoint-models"))


@pytest.fixture(scope="module")
def xgboost_uri(models):
    models.s3.put_object(Bucket=BUCKET, Key="sdk/xgboost/model.tar.gz", Body=xgboost_model_archive(models.tmp))
    return f"s3://{BUCKET}/sdk/xgboost/model.tar.gz"


def sklearn_archive(tmp: Path) -> bytes:
    """A model.joblib made by the scikit-learn image's own runtime (so its pickle loads there)."""
    python = (
        runtimes.ensure(runtimes.resolve(SKLEARN_IMAGE), Path(os.environ["SELFMAKER_RUNTIMES_DIR"]), lambda line: None)
        / "python"
    )
    subprocess.run([str(python), "-c", MAKE_SKLEARN_MODEL, str(tmp)], check=True)
    return tar_gz({"model.joblib": (tmp / "model.joblib").read_bytes()})


def test_v2_deploy_and_predict_builtin_xgboost(sdk_v2, server, xgboost_uri):
    result = sdk_v2.run(
        server,
        FAST_V2_WAIT
        + f"""
    import json
    from sagemaker import image_uris
    from sagemaker.deserializers import CSVDeserializer
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer
    model = Model(image_uri=image_uris.retrieve("xgboost", "us-east-1", "1.7-1"), model_data="{xgboost_uri}",
                  role="arn:aws:iam::123456789012:role/SageMakerRole", predictor_cls=Predictor)
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                             serializer=CSVSerializer(), deserializer=CSVDeserializer())
    rows = predictor.predict([[3, 1], [5, 2]])
    status = predictor.sagemaker_session.sagemaker_client.describe_endpoint(
        EndpointName=predictor.endpoint_name)["EndpointStatus"]
    predictor.delete_endpoint()
    print("\\n" + json.dumps({{"rows": rows, "status": status}}))
    """,
    )
    assert result["status"] == "InService"
    predictions = [float(x) for row in result["rows"] for x in row]
    assert len(predictions) == 2 and abs(predictions[0] - 7) < 0.5 and abs(predictions[1] - 12) < 0.5


def test_v2_deploy_and_predict_sklearn_script_mode(sdk_v2, server, models):
    models.s3.put_object(Bucket=BUCKET, Key="sdk/sklearn/model.tar.gz", Body=sklearn_archive(models.tmp))
    (sdk_v2.root / "inference.py").write_text(
        "import os, joblib\n\n"
        "def model_fn(model_dir):\n"
        "    return joblib.load(os.path.join(model_dir, 'model.joblib'))\n\n"
        "def predict_fn(rows, model):\n"
        "    return [round(float(p), 3) for p in model.predict(rows)]\n"
    )
    result = sdk_v2.run(
        server,
        FAST_V2_WAIT
        + f"""
    import json
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.serializers import JSONSerializer
    from sagemaker.sklearn import SKLearnModel
    model = SKLearnModel(model_data="s3://{BUCKET}/sdk/sklearn/model.tar.gz", entry_point="inference.py",
                         role="arn:aws:iam::123456789012:role/SageMakerRole", framework_version="1.2-1",
                         py_version="py3")
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                             serializer=JSONSerializer(), deserializer=JSONDeserializer())
    answer = predictor.predict([[3, 2], [1, 0]])
    predictor.delete_endpoint()
    print("\\n" + json.dumps({{"answer": answer}}))
    """,
    )
    assert result["answer"] == [8.0, 2.0]


def test_v3_endpoint_invoke(sdk_v3, server, xgboost_uri):
    result = sdk_v3.run(
        server,
        f"""
    import json
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model
    from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    Model.create(model_name="v3-xgb", execution_role_arn="arn:aws:iam::123456789012:role/SageMakerRole",
                 primary_container=ContainerDefinition(image=image, model_data_url="{xgboost_uri}"))
    EndpointConfig.create(endpoint_config_name="v3-xgb", production_variants=[ProductionVariant(
        variant_name="AllTraffic", model_name="v3-xgb", instance_type="ml.m5.large", initial_instance_count=1)])
    endpoint = Endpoint.create(endpoint_name="v3-xgb", endpoint_config_name="v3-xgb")
    endpoint.wait_for_status("InService", poll=1, timeout=600)
    answer = endpoint.invoke(body="3,1", content_type="text/csv", accept="text/csv")
    body = answer.body.read() if hasattr(answer.body, "read") else answer.body
    endpoint.refresh()
    variant = endpoint.production_variants[0]
    endpoint.delete()
    print(json.dumps({{"body": body.decode(), "variant": answer.invoked_production_variant,
                      "instances": variant.current_instance_count}}))
    """,
    )
    assert abs(float(result["body"]) - 7) < 0.5
    assert (result["variant"], result["instances"]) == ("AllTraffic", 1)
