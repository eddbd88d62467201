"""The built-in XGBoost algorithm (selfmaker/container/xgboost_algorithm.py) run in its runtime on tiny data."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from selfmaker.container import xgboost_algorithm
from selfmaker.services.jobs.training import final_metrics
from support import xgboost_runtime

MODULE = "selfmaker.container.xgboost_algorithm"


def rows(n: int = 60) -> list[tuple[float, float, float]]:
    """y = 2 a + b, deterministic."""
    return [(2.0 * (i % 7) + (i % 3), float(i % 7), float(i % 3)) for i in range(n)]


def csv_text(data) -> str:
    return "".join(",".join(f"{v:g}" for v in row) + "\n" for row in data)


def libsvm_text(data) -> str:
    return "".join(f"{row[0]:g} 1:{row[1]:g} 2:{row[2]:g}\n" for row in data)


def job_dir(tmp_path: Path, hyperparameters: dict, channels: dict[str, tuple[str | None, dict[str, str]]]) -> Path:
    """An /opt/ml tree: hyperparameters.json, inputdataconfig.json and channel files."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    data_config = {}
    for name, (content_type, files) in channels.items():
        data_config[name] = {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
            **({"ContentType": content_type} if content_type else {}),
        }
        for file_name, text in files.items():
            path = tmp_path / "input" / "data" / name / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    (config / "inputdataconfig.json").write_text(json.dumps(data_config))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    return tmp_path


def test_csv_train_and_validation_log_lines_metrics_and_model(tmp_path):
    base = job_dir(
        tmp_path,
        {"num_round": 5, "max_depth": 3, "eta": 0.5, "objective": "reg:squarederror"},
        {
            "train": ("text/csv", {"part-1.csv": csv_text(rows()[:30]), "part-2.csv": csv_text(rows()[30:])}),
            "validation": ("text/csv", {"v.csv": csv_text(rows(20))}),
        },
    )
    result = xgboost_runtime.run_module(MODULE, base)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = re.findall(r"^\[\d+\]#011train-rmse:\S+#011validation-rmse:\S+$", result.stdout, re.M)
    assert len(lines) == 5 and lines[0].startswith("[0]#011") and lines[-1].startswith("[4]#011")
    assert "Train matrix has 60 rows and 2 columns" in result.stdout
    found = {
        m["MetricName"]: m["Value"]
        for m in final_metrics(result.stdout, xgboost_algorithm.builtin_metric_definitions())
    }
    assert set(found) == {"train:rmse", "validation:rmse"}
    assert found["validation:rmse"] == float(lines[-1].rsplit(":", 1)[1])
    # The SDK-documented user regex matches too.
    assert re.search(r"validation-rmse:([0-9\.]+)", result.stdout)
    model = base / "model" / "xgboost-model"
    assert model.exists() and model.stat().st_size > 0
    # The saved model predicts what it learned (within a tolerance of the rmse it reports).
    script = (
        f"import xgboost as xgb; b = xgb.Booster(); b.load_model({str(model)!r}); "
        "import numpy as np; print(b.predict(xgb.DMatrix(np.array([[3.0, 2.0]], dtype='float32')))[0])"
    )
    predicted = subprocess.run(
        [xgboost_runtime.python(), "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert abs(float(predicted) - 8.0) < 1.5


def test_csv_trains_without_importing_pandas_or_scikit_learn(tmp_path):
    """A trial's start-up is its fixed cost: CSV read by numpy, xgboost without pandas, scikit-learn and
    scipy.special; scipy.special stays the real one for whoever imports it afterwards, and xgboost's softmax
    (a stand-in's while it imported) is SciPy's."""
    base = job_dir(tmp_path, {"num_round": 2}, {"train": ("text/csv", {"t.csv": csv_text(rows())})})
    check = (
        "import sys; from selfmaker.container import xgboost_algorithm as a; code = a.main(); "
        "print('LOADED', sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'sklearn', 'xgboost'}), "
        "'scipy.special' in sys.modules); "
        "import numpy as np, scipy, scipy.special, xgboost.sklearn; x = np.array([[1.0, 2.0, 4.0]]); "
        "print('REAL', type(scipy.special) is type(np), scipy.special.__file__.endswith('__init__.py'), "
        "np.array_equal(xgboost.sklearn.softmax(x, axis=1), scipy.special.softmax(x, axis=1))); "
        "sys.exit(code)"
    )
    result = subprocess.run(
        [xgboost_runtime.python(), "-c", check],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(xgboost_runtime.REPO), "SAGEMAKER_BASE_DIR": str(base)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOADED ['xgboost'] False" in result.stdout
    assert "REAL True True True" in result.stdout
    assert (base / "model" / "xgboost-model").exists()


def test_csv_with_missing_values_still_trains(tmp_path):
    """An empty CSV field is a missing value (numpy refuses it; pandas reads it as NaN, as the algorithm does)."""
    text = csv_text(rows()).replace("\n1,0,1\n", "\n1,,1\n", 1)  # one row's first feature left empty
    assert "\n1,,1\n" in text
    base = job_dir(tmp_path, {"num_round": 2}, {"train": ("text/csv", {"t.csv": text})})
    result = xgboost_runtime.run_module(MODULE, base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Train matrix has 60 rows and 2 columns" in result.stdout


def test_libsvm_is_the_default_content_type_and_early_stopping(tmp_path):
    base = job_dir(
        tmp_path,
        {"num_round": 200, "early_stopping_rounds": 3, "eta": 0.9, "eval_metric": "mae,rmse"},
        {
            "train": (None, {"train.libsvm": libsvm_text(rows())}),
            "validation": (None, {"validation.libsvm": libsvm_text(rows(20))}),
        },
    )
    result = xgboost_runtime.run_module(MODULE, base)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = re.findall(
        r"^\[(\d+)\]#011train-mae:\S+#011train-rmse:\S+#011validation-mae:\S+#011validation-rmse:\S+$",
        result.stdout,
        re.M,
    )
    assert 3 < len(lines) < 200  # stopped early
    assert (base / "model" / "xgboost-model").exists()


def test_multiclass_and_csv_weights(tmp_path):
    data = [(float(i % 3), float(i % 3) + 0.1 * (i % 5), 1.0) for i in range(45)]
    text = "".join(f"{label:g},{1 + i % 2},{a:g},{b:g}\n" for i, (label, a, b) in enumerate(data))
    base = job_dir(
        tmp_path,
        {"num_round": 3, "objective": "multi:softprob", "num_class": 3, "csv_weights": 1, "eval_metric": "mlogloss"},
        {"train": ("text/csv; label_size=1", {"t.csv": text})},
    )
    result = xgboost_runtime.run_module(MODULE, base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Train matrix has 45 rows and 2 columns" in result.stdout
    assert re.search(r"^\[2\]#011train-mlogloss:\S+$", result.stdout, re.M)


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"max_depth": 3}, "Missing required hyperparameter: num_round"),
        ({"num_round": 0}, "Hyperparameter num_round: 0 is not in [1, +inf)"),
        ({"num_round": 2, "eta": 2}, "Hyperparameter eta: 2.0 is not in [0, 1]"),
        ({"num_round": 2, "subsample": 0}, "Hyperparameter subsample: 0.0 is not in (0, 1]"),
        ({"num_round": "x"}, "Hyperparameter num_round: could not parse value (caused by ValueError)"),
        ({"num_round": 2, "objective": "reg:nope"}, "Hyperparameter objective: reg:nope is not in"),
        ({"num_round": 2, "colour": "red"}, "Extraneous hyperparameter found: colour"),
        (
            {"num_round": 2, "objective": "multi:softmax"},
            "Require input for parameter num_class for multi-classification",
        ),
        (
            {"num_round": 2, "num_class": 3},
            "Do not need to setup parameter num_class for learning task reg:squarederror",
        ),
        ({"num_round": 2, "eval_metric": "rmse,nope"}, "Hyperparameter eval_metric: value"),
    ],
)
def test_hyperparameter_validation(hyperparameters, message):
    with pytest.raises(xgboost_algorithm.UserError) as raised:
        xgboost_algorithm.validate({k: str(v) for k, v in hyperparameters.items()})
    assert str(raised.value).startswith(message)


def test_validation_parses_and_keeps_sagemaker_keys_out():
    parsed = xgboost_algorithm.validate(
        {
            "num_round": "10",
            "eta": "0.3",
            "eval_metric": "auc,error",
            "objective": "binary:logistic",
            "sagemaker_region": '"us-east-1"',
        }
    )
    assert parsed == {"num_round": 10, "eta": 0.3, "eval_metric": ["auc", "error"], "objective": "binary:logistic"}
    assert xgboost_algorithm.booster_params(parsed) == {
        "eta": 0.3,
        "eval_metric": ["auc", "error"],
        "objective": "binary:logistic",
    }


def test_a_hyperparameter_error_is_the_jobs_failure(tmp_path):
    base = job_dir(tmp_path, {"max_depth": 3}, {"train": ("text/csv", {"t.csv": csv_text(rows())})})
    result = xgboost_runtime.run_module(MODULE, base)
    assert result.returncode == 1
    assert (base / "output" / "failure").read_text() == "ClientError: Missing required hyperparameter: num_round"
    assert not (base / "model" / "xgboost-model").exists()


@pytest.mark.parametrize(
    "content_type, expected",
    [
        (None, "text/libsvm"),
        ("text/csv", "text/csv"),
        ("csv", "text/csv"),
        ("text/csv; label_size=1", "text/csv"),
        ("libsvm", "text/libsvm"),
        ("text/x-libsvm", "text/libsvm"),
    ],
)
def test_content_types(content_type, expected):
    assert xgboost_algorithm.content_type({"ContentType": content_type} if content_type else {}) == expected


@pytest.mark.parametrize(
    "content_type, message",
    [
        (
            "application/x-recordio-protobuf",
            "Content type application/x-recordio-protobuf is not supported by SelfMaker",
        ),
        ("text/csv;label_size=2", "text/csv;label_size=2 is not an accepted csv ContentType"),
        ("image/png", "Content type image/png is not supported by this algorithm."),
    ],
)
def test_content_type_errors(content_type, message):
    with pytest.raises(xgboost_algorithm.UserError, match=re.escape(message)):
        xgboost_algorithm.content_type({"ContentType": content_type})


@pytest.mark.parametrize(
    "channels, message",
    [
        ({"validation": ("text/csv", {"v.csv": "1,2\n"})}, "ClientError: No data in the channel: train"),
        ({"train": ("text/csv", {})}, "ClientError: No data in the channel: train"),
        ({"train": ("text/csv", {"t.csv": "label,a\n1,2\n"})}, "ClientError: Could not read the CSV data of train"),
        (
            {"train": ("text/csv", {"t.csv": "1,2\n"}), "extra": ("text/csv", {"e.csv": "1,2\n"})},
            "ClientError: Channels ['extra'] are not accepted",
        ),
    ],
)
def test_channel_errors(tmp_path, channels, message):
    base = job_dir(tmp_path, {"num_round": 2}, channels)
    result = xgboost_runtime.run_module(MODULE, base)
    assert result.returncode == 1
    assert (base / "output" / "failure").read_text().startswith(message)


def test_metric_definitions_are_the_algorithms():
    names = {d["Name"] for d in xgboost_algorithm.builtin_metric_definitions()}
    assert {"train:rmse", "validation:rmse", "validation:auc", "validation:error", "validation:mlogloss"} <= names
    auc = next(d for d in xgboost_algorithm.METRIC_DEFINITIONS if d["Name"] == "validation:auc")
    assert re.match(auc["Regex"], "[12]#011train-auc:0.9#011validation-auc:0.87500").group(1) == "0.87500"
    assert not re.match(auc["Regex"], "[12]#011validation-aucpr:0.8")
