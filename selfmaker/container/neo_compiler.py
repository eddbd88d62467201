"""The compiler of a compilation job: ``python -m selfmaker.container.neo_compiler`` inside the sandbox.

It reads /opt/ml/input/config/compilationjobconfig.json (the job's InputConfig
and OutputConfig), the model unpacked in /opt/ml/input/data/model, and writes
the compiled model to /opt/ml/model (``compiled.meta`` + ``compiled.so`` or
``model.onnx``: docs/compilation.md). What Neo did per framework:

* XGBOOST, and SKLEARN tree ensembles: Treelite -> tl2cgen C -> gcc shared
  library where a C compiler exists (Neo used Treelite too); otherwise
  onnxmltools / skl2onnx -> ONNX Runtime;
* other SKLEARN models (pipelines, linear models, MLPs): skl2onnx -> ONNX Runtime;
* ONNX: optimized by ONNX Runtime (graph optimizations saved, EXTENDED level:
  portable across x86-64 CPUs);
* PYTORCH (torch), and KERAS / TFLITE / TENSORFLOW (tensorflow + tf2onnx,
  neo_tensorflow.py): only where those packages are in the compilation runtime
  (an optional extra); MXNET and DARKNET are refused with the reason;
* CompilerOptions ``{"dtype": "int8"}``: ONNX Runtime dynamic int8
  quantization of the graph's MatMul/Gemm weights.

Every mistake of the user's ends in /opt/ml/output/failure as
``ClientError: InputConfiguration: ...`` (Neo's words, docs' error catalogue)
and a non-zero exit. The accuracy of the result against the original model on
sample data drawn from the input shapes is logged (max relative error).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys
import time
from pathlib import Path

from .compiled_model import META, CompiledModel

BASE = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
CONFIG = BASE / "input" / "config" / "compilationjobconfig.json"
MODEL_IN = BASE / "input" / "data" / "model"
MODEL_OUT = BASE / "model"
FAILURE = BASE / "output" / "failure"
SAMPLE_ROWS = 64
EXTRAS = {
    "PYTORCH": "torch",
    "KERAS": "tensorflow and tf2onnx",
    "TFLITE": "tensorflow and tf2onnx",
    "TENSORFLOW": "tensorflow and tf2onnx",
}


class InputConfiguration(Exception):
    """The user's to fix; the message follows ``ClientError: InputConfiguration: ``."""


def say(message: str) -> None:
    print(message, flush=True)


# -- the request ------------------------------------------------------------------------------------------------


def shapes(text: str | None, framework: str) -> dict[str, list[int]] | None:
    """DataInputConfig as name -> shape (a PyTorch list names its inputs input0..N, as neo-loader did)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
        if isinstance(value, str):  # neo-loader also took the JSON doubly encoded
            value = json.loads(value)
    except ValueError:
        raise InputConfiguration(f"DataInputConfig is not valid JSON: {text[:200]}") from None
    if isinstance(value, list) and framework == "PYTORCH":
        value = {f"input{i}": shape for i, shape in enumerate(value)}
    if not isinstance(value, dict):
        raise InputConfiguration("DataInputConfig is not dictionary or list")
    if not value:
        raise InputConfiguration("DataInputConfig names no input")
    for name, shape in value.items():
        if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
            raise InputConfiguration(
                f"the shape of input {name!r} in DataInputConfig must be a list of positive integers, not {shape!r}"
            )
    return value


def model_file(framework: str) -> Path:
    """The one model file of the framework in the tarball (neo-loader's rules)."""
    files = sorted(
        p
        for p in MODEL_IN.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(MODEL_IN).parts)
        and p.relative_to(MODEL_IN).parts[0] != "code"
    )
    where = "the model archive"
    if framework == "XGBOOST":
        if len(files) > 1:
            files = [p for p in files if p.name.endswith("xgboost-model-0")] or files
        if len(files) != 1:
            raise InputConfiguration(f"Exactly one XGBoost model file is allowed; {where} holds {len(files)} files.")
        return files[0]
    suffixes, words = {
        "SKLEARN": ((".joblib",), "Exactly one .joblib file is allowed for SKLearn models."),
        "ONNX": ((".onnx",), "Exactly one .onnx file is allowed for ONNX models."),
        "PYTORCH": ((".pth", ".pt"), "Exactly one .pth or .pt file is allowed for PyTorch models."),
        "TENSORFLOW": ((".pb", ".pbtxt"), "Exactly one .pb or .pbtxt file is allowed for TensorFlow models."),
        # Neo took .h5; Keras 3's own .keras loads the same way.
        "KERAS": ((".h5", ".keras"), "No h5 file provided in /opt/ml/input/data/model"),
        "TFLITE": ((".tflite",), "Exactly one .tflite file is allowed for TFLite models."),
    }[framework]
    found = [p for p in files if p.suffix in suffixes]
    if framework == "TENSORFLOW":  # a SavedModel directory holds saved_model.pb and fingerprint.pb: its graph counts
        found = [p for p in found if p.stem == "saved_model"] or found
    if len(found) != 1:
        raise InputConfiguration(words)
    return found[0]


def options_of(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InputConfiguration(f"CompilerOptions is not valid JSON: {text[:200]}") from None
    if not isinstance(value, dict):
        raise InputConfiguration("CompilerOptions must be a JSON object for x86-64 CPU targets")
    foreign = sorted(
        set(value)
        & {
            "gpu-code",
            "gpu_code",
            "trt-ver",
            "cuda-ver",
            "ANDROID_PLATFORM",
            "JETPACK_VERSION",
            "mattr",
            "class_labels",
        }
    )
    if foreign:
        raise InputConfiguration(
            f"CompilerOptions {', '.join(foreign)} do not apply to x86-64 Linux CPU targets "
            "(they are for GPUs, ARM devices, Android or CoreML)"
        )
    dtype = value.get("dtype", "float32")
    if dtype not in ("float32", "float", "int64", "long", "int8"):
        raise InputConfiguration(f"CompilerOptions dtype {dtype!r} is not one of float32, float, int64, long, int8")
    return value


# -- tree models ------------------------------------------------------------------------------------------------


def has_c_compiler() -> bool:
    return any(shutil.which(cc) for cc in ("gcc", "cc"))


def load_xgboost(path: Path):
    """An xgboost Booster from any format SageMaker's XGBoost wrote: JSON, UBJSON, legacy binary or a pickle."""
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
        return booster
    except xgb.core.XGBoostError:
        pass
    try:
        with open(path, "rb") as f:
            loaded = pickle.load(f)  # the user's own model, in the user's sandbox
    except Exception:
        raise InputConfiguration(
            f"Unable to load the XGBoost model {path.name}: it is not an XGBoost model (JSON, UBJSON, binary or pickle)"
        ) from None
    loaded = loaded.get_booster() if hasattr(loaded, "get_booster") else loaded
    if not isinstance(loaded, xgb.Booster):
        raise InputConfiguration(f"{path.name} holds a {type(loaded).__name__}, not an XGBoost model")
    return loaded


TREE_ENSEMBLES = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
)


# One call per batch, not per row: the entry point SelfMaker adds to tl2cgen's C (compiled_model.py calls it).
# It copies each row because a quantized model's predict() rewrites its input in place, marks NaN (and
# absent trailing features) missing as a DMatrix does, and zeroes each result, which predict() accumulates into.
ROWS_ENTRY = """#include "header.h"

int32_t selfmaker_predict_rows(const float* rows, int64_t n_rows, int32_t n_cols, int32_t pred_margin, LEAF* out) {
  const int32_t n_features = get_num_feature();
  const int32_t width = N_TARGET * MAX_N_CLASS;
  union Entry* row = (union Entry*)malloc(sizeof(union Entry) * (size_t)n_features);
  if (row == NULL) return -1;
  for (int64_t i = 0; i < n_rows; ++i) {
    const float* in = rows + i * (int64_t)n_cols;
    for (int32_t j = 0; j < n_features; ++j) {
      if (j < n_cols && !isnan(in[j])) row[j].fvalue = in[j]; else row[j].missing = -1;
    }
    LEAF* result = out + i * (int64_t)width;
    memset(result, 0, sizeof(LEAF) * (size_t)width);
    predict(row, pred_margin, result);
  }
  free(row);
  return 0;
}
"""


def compile_trees(treelite_model, options: dict, meta: dict) -> None:
    """tl2cgen's C for the trees, thresholds quantized to integer compares (exact), plus :data:`ROWS_ENTRY`, built
    by gcc into compiled.so."""
    import tempfile

    import tl2cgen

    flags = ["-O3", "-fPIC"]
    if options.get("mcpu"):
        flags.append(f"-march={options['mcpu']}")
    started, cpus = time.time(), max(1, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="tl2cgen-") as work:
        source = Path(work)
        tl2cgen.generate_c_code(treelite_model, work, params={"parallel_comp": cpus, "quantize": 1})
        leaf = re.search(
            r"void predict\(union Entry\* data, int pred_margin, (\w+)\* result\)", (source / "header.h").read_text()
        )
        if leaf is None:  # a tl2cgen whose C we do not know: better no artifact than a wrong one
            raise RuntimeError("tl2cgen's header.h declares no predict(union Entry*, int, T*) this compiler knows")
        (source / "selfmaker_rows.c").write_text(ROWS_ENTRY.replace("LEAF", leaf.group(1)))
        recipe = json.loads((source / "recipe.json").read_text())
        recipe["sources"].append({"name": "selfmaker_rows", "length": ROWS_ENTRY.count("\n")})
        (source / "recipe.json").write_text(json.dumps(recipe))
        try:
            library = tl2cgen.create_shared("gcc" if shutil.which("gcc") else "cc", work, nthread=cpus, options=flags)
        except Exception as err:
            raise InputConfiguration(f"the C compiler refused the generated code ({' '.join(flags)}): {err}") from None
        shutil.move(library, MODEL_OUT / "compiled.so")
    say(f"SelfMaker: Treelite -> tl2cgen (quantized) -> {' '.join(flags)} compiled.so in {time.time() - started:.1f} s")
    meta.update(Backend="tl2cgen", Artifact="compiled.so")


# -- ONNX -------------------------------------------------------------------------------------------------------


def optimize_onnx(source: Path, options: dict, meta: dict) -> None:
    """int8 dynamic quantization if asked (of the original graph, as ORT advises), then ONNX Runtime's graph
    optimizations saved at the EXTENDED level (ALL's NCHWc layouts would tie the file to this CPU)."""
    import onnxruntime as ort

    target = MODEL_OUT / "model.onnx"
    if options.get("dtype") == "int8":
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = MODEL_OUT / "quantized.onnx"
        try:
            quantize_dynamic(
                str(source),
                str(quantized),
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        except Exception as err:
            raise InputConfiguration(f"int8 quantization failed: {str(err)[:600]}") from None
        say(
            f"SelfMaker: dynamic int8 quantization (MatMul/Gemm weights): "
            f"{source.stat().st_size} -> {quantized.stat().st_size} bytes"
        )
        meta["Quantization"] = "int8-dynamic"
        source = quantized
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session_options.optimized_model_filepath = str(target)
    try:
        ort.InferenceSession(str(source), session_options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise InputConfiguration(f"ONNX Runtime cannot load the model: {str(err)[:600]}") from None
    if source.name == "quantized.onnx":
        source.unlink()
    say(f"SelfMaker: ONNX Runtime graph optimizations (EXTENDED) saved: {target.stat().st_size} bytes")
    meta.update(Backend="onnxruntime", Artifact="model.onnx")


def onnx_inputs(path: Path) -> list[dict]:
    import onnx

    graph = onnx.load(str(path)).graph
    initializers = {i.name for i in graph.initializer}
    types = {1: "float32", 7: "int64", 6: "int32", 11: "float64", 10: "float16", 2: "uint8"}
    found = []
    for item in graph.input:
        if item.name in initializers:
            continue
        tensor = item.type.tensor_type
        found.append(
            {
                "name": item.name,
                "shape": [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim],
                "dtype": types.get(tensor.elem_type, "float32"),
            }
        )
    return found


def check_onnx_shapes(declared: dict | None, inputs: list[dict]) -> None:
    if declared is None:
        raise InputConfiguration("DataInputConfig is required for ONNX models: {input name: shape}")
    names = [i["name"] for i in inputs]
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise InputConfiguration(f"DataInputConfig names inputs the model does not have: {unknown}; it has {names}")
    missing = sorted(set(names) - set(declared))
    if missing:
        raise InputConfiguration(f"DataInputConfig gives no shape for the model's inputs {missing}")
    for item in inputs:
        shape = declared[item["name"]]
        if len(shape) != len(item["shape"]) or any(m and m != d for m, d in zip(item["shape"], shape)):
            raise InputConfiguration(
                f"the shape {shape} of input {item['name']!r} does not fit the model's {item['shape']} "
                "(ONNX shapes are NCHW)"
            )


# -- per framework ----------------------------------------------------------------------------------------------


def two_d(declared: dict | None, features: int, framework: str) -> dict:
    """The one 2-D input of a tree or scikit-learn model, checked against its number of features."""
    if declared is None:
        return {"input": [1, features]}
    if len(declared) != 1:
        raise InputConfiguration(f"{framework} models take one input; DataInputConfig names {len(declared)}")
    ((name, shape),) = declared.items()
    if len(shape) != 2:
        raise InputConfiguration(f"the input of a {framework} model must be 2-D [rows, features], not {shape}")
    if shape[1] != features:
        raise InputConfiguration(f"the model takes {features} features; DataInputConfig says {shape[1]} ({shape})")
    return {name: shape}


def xgboost(path: Path, declared, options: dict, meta: dict):
    import treelite

    booster = load_xgboost(path)
    features = booster.num_features()
    meta["Inputs"] = [
        {"name": n, "shape": s, "dtype": "float32"} for n, s in two_d(declared, features, "XGBOOST").items()
    ]
    if declared is None:
        meta["DerivedDataInputConfig"] = json.dumps({"input": [1, features]})
    if has_c_compiler():
        compile_trees(treelite.frontend.from_xgboost(booster), options, meta)
    else:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        onnx_model = onnxmltools.convert_xgboost(booster, initial_types=[("input", FloatTensorType([None, features]))])
        source = MODEL_OUT / "source.onnx"
        source.write_bytes(onnx_model.SerializeToString())
        optimize_onnx(source, options, meta)
        source.unlink()
        if objective.startswith(("binary:", "multi:", "rank:")) and objective != "binary:logitraw":
            meta["OutputIndex"] = 1  # probabilities
            if objective.startswith("binary:"):
                meta["OutputColumn"] = 1
        else:
            meta["FlattenOutput"] = True
    meta["RowInput"] = True
    import xgboost as xgb

    return lambda rows: booster.predict(xgb.DMatrix(rows))


def sklearn(path: Path, declared, options: dict, meta: dict):
    import joblib

    try:
        model = joblib.load(path)
    except Exception as err:
        raise InputConfiguration(f"Unable to load {path.name} with joblib: {str(err)[:400]}") from None
    if not hasattr(model, "predict"):
        raise InputConfiguration(f"{path.name} holds a {type(model).__name__}, which has no predict method")
    features = getattr(model, "n_features_in_", None)
    if features is None:
        if declared is None:
            raise InputConfiguration('DataInputConfig is required for this SKLEARN model: {"input": [1, features]}')
        features = next(iter(declared.values()))[-1]
    ((name, shape),) = two_d(declared, features, "SKLEARN").items()
    meta["Inputs"] = [{"name": name, "shape": shape, "dtype": "float32"}]
    meta["RowInput"] = True
    classes = getattr(model, "classes_", None)
    if type(model).__name__ in TREE_ENSEMBLES and has_c_compiler():
        import treelite

        compile_trees(treelite.sklearn.import_model(model), options, meta)
        if classes is not None:
            meta["ClassLabels"] = classes.tolist()
    else:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType

        try:
            onnx_model = to_onnx(
                model,
                initial_types=[(name, FloatTensorType([None, features]))],
                options={"zipmap": False} if classes is not None else None,
                target_opset={"": 17, "ai.onnx.ml": 3},
            )
        except Exception as err:
            raise InputConfiguration(f"skl2onnx cannot convert {type(model).__name__}: {str(err)[:500]}") from None
        source = MODEL_OUT / "source.onnx"
        source.write_bytes(onnx_model.SerializeToString())
        optimize_onnx(source, options, meta)
        source.unlink()
        if classes is None:
            meta["FlattenOutput"] = _single_target(model)
    return model.predict


def _single_target(model) -> bool:
    return getattr(model, "n_outputs_", 1) == 1


def onnx_framework(path: Path, declared, options: dict, meta: dict):
    import onnxruntime as ort

    inputs = onnx_inputs(path)
    check_onnx_shapes(declared, inputs)
    meta["Inputs"] = [{**i, "shape": declared[i["name"]]} for i in inputs]
    original = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    optimize_onnx(path, options, meta)
    return lambda feeds: original.run(None, feeds)[0]


def pytorch(path: Path, declared, options: dict, meta: dict):
    import torch

    if declared is None:
        raise InputConfiguration('DataInputConfig is required for PyTorch models: {"input0": [1, 3, 224, 224]}')
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception:
        try:
            module = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as err:
            raise InputConfiguration(f"Unable to load {path.name} with torch.jit.load or torch.load: {err}") from None
    module.eval()
    names = sorted(declared)  # neo-loader sorted PyTorch inputs lexically
    dtype = torch.int64 if options.get("dtype") in ("int64", "long") else torch.float32
    sample = tuple(torch.zeros(declared[n], dtype=dtype) for n in names)
    source = MODEL_OUT / "source.onnx"
    # TorchScript through the TorchScript exporter (torch.export cannot take a ScriptModule); the first axis is
    # left free so the compiled model answers any number of rows, as an endpoint sends them.
    torch.onnx.export(
        module,
        sample,
        str(source),
        input_names=names,
        dynamic_axes={n: {0: "batch"} for n in names if declared[n]},
        dynamo=False,
    )
    meta["Inputs"] = [{"name": n, "shape": declared[n], "dtype": str(dtype).split(".")[-1]} for n in names]
    optimize_onnx(source, options, meta)
    source.unlink()

    def original(feeds):
        with torch.no_grad():
            out = module(*(torch.from_numpy(feeds[n]) for n in names))
        return (out[0] if isinstance(out, (tuple, list)) else out).detach().numpy()

    return original


def tensorflow_family(framework: str):
    """KERAS, TFLITE and TENSORFLOW: neo_tensorflow.py, imported only when asked (it needs TensorFlow)."""

    def convert(path: Path, declared, options: dict, meta: dict):
        from . import neo_tensorflow

        return neo_tensorflow.CONVERTERS[framework](path, declared, options, meta)

    return convert


CONVERTERS = {
    "XGBOOST": xgboost,
    "SKLEARN": sklearn,
    "ONNX": onnx_framework,
    "PYTORCH": pytorch,
    "KERAS": tensorflow_family("KERAS"),
    "TFLITE": tensorflow_family("TFLITE"),
    "TENSORFLOW": tensorflow_family("TENSORFLOW"),
}


def extra_missing(framework: str) -> bool:
    import importlib.util

    needed = {"PYTORCH": ["torch"]}.get(framework, ["tensorflow", "tf2onnx"] if framework in EXTRAS else [])
    return any(importlib.util.find_spec(m) is None for m in needed)


# -- accuracy ---------------------------------------------------------------------------------------------------


def accuracy(original, meta: dict) -> None:
    """Log the max relative error of the compiled model against the original on sample data."""
    import numpy as np

    if original is None:
        say("SelfMaker: accuracy check skipped: the original model cannot run here")
        return
    rng = np.random.default_rng(0)
    inputs = meta["Inputs"]
    if meta.get("RowInput"):
        (item,) = inputs
        rows = rng.standard_normal((SAMPLE_ROWS, item["shape"][1])).astype(np.float32)
        expected, got = original(rows), CompiledModel(MODEL_OUT).predict(rows)
        samples = SAMPLE_ROWS
    else:
        feeds = {i["name"]: rng.standard_normal(i["shape"]).astype(i["dtype"]) for i in inputs}
        expected, got = original(feeds), CompiledModel(MODEL_OUT).predict(feeds)
        samples = inputs[0]["shape"][0]
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.dtype.kind not in "fc" or got.dtype.kind not in "fc":  # class labels
        agree = float(np.mean(expected.reshape(-1) == got.reshape(-1)))
        say(f"SelfMaker: accuracy on {samples} sample rows: {agree:.2%} of the labels agree with the original")
        meta["Accuracy"] = {"LabelAgreement": agree}
        return
    expected, got = expected.astype(np.float64).reshape(got.shape), got.astype(np.float64)
    absolute = np.abs(expected - got)
    relative = float(np.max(absolute / np.maximum(np.abs(expected), 1e-6)))
    say(
        f"SelfMaker: accuracy on {samples} sample inputs drawn from the input shapes: "
        f"max relative error {relative:.3g}, max absolute error {float(absolute.max()):.3g}"
    )
    meta["Accuracy"] = {"MaxRelativeError": relative, "MaxAbsoluteError": float(absolute.max())}


# -- main -------------------------------------------------------------------------------------------------------


def compile_model(config: dict) -> dict:
    framework = config["InputConfig"]["Framework"]
    output = config["OutputConfig"]
    if framework == "TENSORFLOW":
        model_file(framework)  # Neo's own first complaint, with or without TensorFlow: "Exactly one .pb ..."
    if framework not in CONVERTERS:
        raise InputConfiguration(
            f"SelfMaker does not compile {framework} models: "
            + {
                "MXNET": "MXNet's last release (1.9.1, 2022) needs numpy < 2; export the model to ONNX "
                "(mx.onnx.export_model) and compile it as ONNX",
                "DARKNET": "no maintained converter exists; convert the model to ONNX and compile it as ONNX",
            }.get(framework, "no converter")
        )
    if extra_missing(framework):
        raise InputConfiguration(
            f"compiling {framework} models needs {EXTRAS[framework]} in the compilation runtime, which this SelfMaker "
            f"does not have: map the compiler image to a runtime with it (docs/compilation.md, Optional frameworks)"
        )
    declared = shapes(config["InputConfig"].get("DataInputConfig"), framework)
    options = options_of(output.get("CompilerOptions"))
    path = model_file(framework)
    say(f"SelfMaker: compiling the {framework} model {path.relative_to(MODEL_IN)} for {target_name(output)}")
    meta: dict = {
        "Framework": framework,
        "Requirements": {"TargetDevice": target_name(output), "TargetDeviceType": "cpu", "Arch": "X86_64"},
        "CompilerOptions": options,
    }
    original = CONVERTERS[framework](path, declared, options, meta)
    if options.get("dtype") == "int8" and meta["Backend"] != "onnxruntime":
        say("SelfMaker: CompilerOptions dtype int8 does not apply to tree models compiled to native code: ignored")
    (MODEL_OUT / META).write_text(json.dumps(meta, indent=1))
    accuracy(original, meta)
    (MODEL_OUT / META).write_text(json.dumps(meta, indent=1))
    return meta


def target_name(output: dict) -> str:
    if output.get("TargetDevice"):
        return output["TargetDevice"]
    platform = output.get("TargetPlatform") or {}
    return f"{platform.get('Os', 'LINUX')}_{platform.get('Arch', 'X86_64')}"


def main() -> int:
    config = json.loads(CONFIG.read_text())
    MODEL_OUT.mkdir(parents=True, exist_ok=True)
    try:
        compile_model(config)
    except InputConfiguration as err:
        message = f"ClientError: InputConfiguration: {err}"
        say(message)
        FAILURE.parent.mkdir(parents=True, exist_ok=True)
        FAILURE.write_text(message)
        return 2
    say("SelfMaker: compilation completed")
    return 0


if __name__ == "__main__":
    # neo_tensorflow imports from this module by its package name: it must find this one, not load a second copy
    # whose InputConfiguration main() would not catch.
    sys.modules.setdefault("selfmaker.container.neo_compiler", sys.modules[__name__])
    sys.exit(main())
