"""Default inference handlers of the framework serving images: scikit-learn, XGBoost, ONNX, compiled models.

The model server falls back to these for any handler a user's inference.py
does not define. Decoding and encoding follow the inference toolkit's
``decoder``/``encoder`` (application/json, text/csv, application/x-npy);
XGBoost's follow the algorithm's serving code (text/csv and libsvm in, csv,
JSON ``{"predictions": [{"score": ...}]}`` or JSON Lines out). numpy and the
framework are imported when a model is served, not before.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

JSON, CSV, NPY = "application/json", "text/csv", "application/x-npy"
JSONLINES = "application/jsonlines"
LIBSVM_TYPES = ("text/libsvm", "text/x-libsvm")
RECORDIO = "application/x-recordio-protobuf"


class InferenceError(Exception):
    """An error with the HTTP status the toolkit answers for it (its BaseInferenceToolkitError)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def unsupported(content_type: str) -> InferenceError:
    return InferenceError(
        415,
        f"Content type {content_type} is not supported by this framework.\n\n"
        "Please implement input_fn to to deserialize the request data or an output_fn to\n"
        "serialize the response. For more information, see the SageMaker Python SDK README.",
    )


def _text(data) -> str:
    return data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data


# -- numpy decoding and encoding (sagemaker_inference.decoder / encoder) -----------------------------------------


def csv_rows(text: str):
    """CSV as a 2-D float32 array, as the toolkit's genfromtxt reads it (missing values become nan).

    numpy's C parser (loadtxt) reads well-formed numbers 20 to 50 times faster than
    genfromtxt, which costs a few hundred microseconds even for one row; anything it
    refuses goes to genfromtxt.
    """
    import numpy as np

    try:
        return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError:
        return np.genfromtxt(io.StringIO(text), delimiter=",", dtype=np.float32, ndmin=2)


def strict_csv_rows(text: str):
    """CSV as the SageMaker XGBoost container reads it: an empty field is a missing value (nan), anything
    else must be a number (ValueError otherwise, a 415 to the caller), and every row has the same width."""
    import numpy as np

    try:  # the C parser for the common case: numbers only, no empty field
        return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError:
        rows = [["nan" if field.strip() == "" else field for field in line.split(",")] for line in text.split("\n")]
        return np.array(rows).astype(np.float32)  # "abc" or rows of different widths: ValueError


def decode(data, content_type: str):
    import numpy as np

    if content_type == JSON:
        return np.array(json.loads(_text(data)))
    if content_type == CSV:
        return csv_rows(_text(data))
    if content_type == NPY:
        return np.load(io.BytesIO(data), allow_pickle=False)
    raise unsupported(content_type)


def encode(array, accept: str):
    import numpy as np

    array = np.asarray(array)
    if accept == JSON:
        return json.dumps(array.tolist())
    if accept == CSV:
        stream = io.StringIO()
        np.savetxt(stream, array if array.ndim else array.reshape(1), delimiter=",", fmt="%s")
        return stream.getvalue()
    if accept == NPY:
        stream = io.BytesIO()
        np.save(stream, array)
        return stream.getvalue()
    raise unsupported(accept)


def numpy_input_fn(data, content_type):
    return decode(data, content_type)


def numpy_output_fn(prediction, accept):
    return encode(prediction, accept), accept


def predict_with_model(data, model):
    return model.predict(data)


@dataclass(frozen=True)
class Framework:
    name: str
    model_fn: Callable
    input_fn: Callable = numpy_input_fn
    predict_fn: Callable = predict_with_model
    output_fn: Callable = numpy_output_fn


# -- scikit-learn -----------------------------------------------------------------------------------------------


def sklearn_model_fn(model_dir):
    directory = Path(model_dir)
    joblib_files = sorted(directory.glob("*.joblib"))
    if joblib_files:
        import joblib

        return joblib.load(joblib_files[0])
    pickles = sorted([*directory.glob("*.pkl"), *directory.glob("*.pickle")])
    if pickles:
        with open(pickles[0], "rb") as f:
            return pickle.load(f)
    raise InferenceError(
        500,
        "Please provide a model_fn implementation: the model directory holds no "
        "*.joblib or *.pkl model to load by default. See documentation for model_fn at "
        "https://sagemaker.readthedocs.io/en/stable/frameworks/sklearn/using_sklearn.html",
    )


# -- XGBoost (the built-in algorithm's serving) ----------------------------------------------------------------


def xgboost_model_fn(model_dir):
    import xgboost as xgb

    directory = Path(model_dir)
    path = directory / "xgboost-model"
    if not path.exists():
        candidates = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
        if not candidates:
            raise InferenceError(500, f"Unable to load model: {model_dir} holds no xgboost-model file")
        path = candidates[0]
    try:
        with open(path, "rb") as f:
            booster = pickle.load(f)
    except Exception:
        booster = xgb.Booster()
        booster.load_model(str(path))
    return booster


def _libsvm_matrix(text: str):
    import numpy as np
    import xgboost as xgb
    from scipy.sparse import csr_matrix

    rows, columns, values = [], [], []
    lines = [line for line in (line.strip() for line in text.splitlines()) if line]
    for index, line in enumerate(lines):
        for item in line.split():  # the first item, without a colon, is a label: ignored
            if ":" in item:
                column, value = item.split(":", 1)
                rows.append(index)
                columns.append(int(column))
                values.append(float(value))
    return xgb.DMatrix(
        csr_matrix(
            (np.array(values, dtype=np.float32), (rows, columns)), shape=(len(lines), max(columns, default=-1) + 1)
        )
    )


def xgboost_input_fn(data, content_type):
    import numpy as np
    import xgboost as xgb

    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == CSV:
            return xgb.DMatrix(strict_csv_rows(_text(data).strip()))
        if kind in LIBSVM_TYPES:
            return _libsvm_matrix(_text(data))
        if kind == JSON:
            rows = json.loads(_text(data))
            rows = rows.get("instances", rows) if isinstance(rows, dict) else rows
            return xgb.DMatrix(np.array(rows, dtype=np.float32, ndmin=2))
    except (ValueError, TypeError) as e:
        raise InferenceError(
            415, f"Loading {kind} data failed with Exception, please ensure data is in {kind} format: {e}"
        ) from None
    if kind == RECORDIO:
        raise InferenceError(
            415,
            f"Content type {RECORDIO} is not supported by SelfMaker's XGBoost serving yet; "
            "send text/csv or text/libsvm",
        )
    raise InferenceError(
        415, f"Content type {content_type} is not supported by this algorithm; use text/csv or text/libsvm"
    )


def xgboost_predict_fn(data, booster):
    best = getattr(booster, "best_iteration", None)
    try:
        limit = (0, int(best) + 1) if best is not None else (0, 0)
    except (TypeError, ValueError):
        limit = (0, 0)
    try:
        return booster.predict(data, validate_features=False, iteration_range=limit)
    except Exception as e:
        raise InferenceError(400, f"Unable to evaluate payload provided: {e}") from None


def xgboost_output_fn(predictions, accept):
    values = predictions.tolist()
    kind = accept.split(";")[0].strip().lower()
    if kind == CSV:
        rows = [",".join(map(str, v)) if isinstance(v, list) else str(v) for v in values]
        if os.environ.get("SAGEMAKER_BATCH"):  # one line per record, as batch transform joins them
            return "\n".join(rows) + "\n", CSV
        return ",".join(rows), CSV
    if kind == JSON:
        return json.dumps({"predictions": [{"score": v} for v in values]}), JSON
    if kind == JSONLINES:
        return "".join(json.dumps({"score": v}) + "\n" for v in values), JSONLINES
    raise InferenceError(
        406,
        f"{accept} is not an accepted Accept type. Please choose one of the following: "
        f"['{JSON}', '{JSONLINES}', '{CSV}'].",
    )


# -- ONNX -------------------------------------------------------------------------------------------------------


def onnx_model_fn(model_dir):
    try:
        import onnxruntime
    except ImportError:
        raise InferenceError(
            500,
            "onnxruntime is not installed in this runtime: map the image to a runtime with "
            "onnxruntime (see docs/jobs.md)",
        ) from None
    models = sorted(Path(model_dir).glob("*.onnx"))
    if not models:
        raise InferenceError(500, f"{model_dir} holds no *.onnx model")
    return onnxruntime.InferenceSession(str(models[0]), providers=["CPUExecutionProvider"])


def onnx_predict_fn(data, session):
    import numpy as np

    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(data, dtype=np.float32)})[0]


# -- compiled models (a compilation job's output: compiled.meta + compiled.so or model.onnx) ---------------------


def compiled_model_fn(model_dir):
    from .compiled_model import CompiledModel

    return CompiledModel(model_dir)


def compiled_input_fn(data, content_type):
    """CSV, JSON (a list of rows, or {"instances": rows}) or NPY, as the uncompiled model's server took them."""
    import numpy as np

    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == JSON:
            rows = json.loads(_text(data))
            rows = rows.get("instances", rows) if isinstance(rows, dict) else rows
            return np.array(rows, dtype=np.float32)
        return decode(data, kind)
    except (ValueError, TypeError) as e:
        raise InferenceError(
            415, f"Loading {kind} data failed with Exception, please ensure data is in {kind} format: {e}"
        ) from None


def compiled_predict_fn(data, model):
    try:
        return model.predict(data)
    except Exception as e:
        raise InferenceError(400, f"Unable to evaluate payload provided: {e}") from None


FRAMEWORKS = {
    "sklearn": Framework("sklearn", sklearn_model_fn),
    "xgboost": Framework("xgboost", xgboost_model_fn, xgboost_input_fn, xgboost_predict_fn, xgboost_output_fn),
    "onnx": Framework("onnx", onnx_model_fn, predict_fn=onnx_predict_fn),
    # A compiled XGBoost model answers in the algorithm's formats, any other as the framework's server did.
    "compiled-xgboost": Framework(
        "compiled-xgboost", compiled_model_fn, compiled_input_fn, compiled_predict_fn, xgboost_output_fn
    ),
    "compiled": Framework("compiled", compiled_model_fn, compiled_input_fn, compiled_predict_fn),
}


def framework(name: str | None, model_dir: Path) -> Framework:
    """The named framework's defaults, else the one the model directory's files point to (sklearn if none)."""
    if name:
        if name not in FRAMEWORKS:
            raise ValueError(f"unknown inference framework {name!r}: one of {sorted(FRAMEWORKS)}")
        return FRAMEWORKS[name]
    meta = model_dir / "compiled.meta"
    if meta.exists():
        compiled_for = json.loads(meta.read_text()).get("Framework")
        return FRAMEWORKS["compiled-xgboost" if compiled_for == "XGBOOST" else "compiled"]
    if (model_dir / "xgboost-model").exists():
        return FRAMEWORKS["xgboost"]
    if any(model_dir.glob("*.onnx")):
        return FRAMEWORKS["onnx"]
    return FRAMEWORKS["sklearn"]
