"""The TensorFlow family of the compiler (neo_compiler.py): KERAS, TFLITE and TENSORFLOW models to ONNX via tf2onnx.

Only where tensorflow (tensorflow-cpu) and tf2onnx are in the compilation runtime (docs/compilation.md, Optional
frameworks). Each converter checks DataInputConfig against the model's own inputs as Neo documents it (TENSORFLOW
and TFLITE NHWC; KERAS NCHW although the model is channel-last), converts with the batch dimension left free so an
endpoint answers any number of rows, and returns TensorFlow's own forward pass for the accuracy check. The ONNX
model is then optimized like any other (neo_compiler.optimize_onnx) and served without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from .neo_compiler import MODEL_IN, MODEL_OUT, InputConfiguration, onnx_inputs, optimize_onnx, say

OPSET = 17  # what ONNX Runtime and tf2onnx 1.17 both handle fully
EXAMPLES = {
    "KERAS": '{"input_1": [1, 3, 224, 224]} (NCHW)',
    "TFLITE": '{"input": [1, 224, 224, 3]} (NHWC)',
    "TENSORFLOW": '{"input": [1, 224, 224, 3]} (NHWC)',
}
# Ops whose presence means a graph still reads variables: it was not frozen, and has no weights of its own.
VARIABLE_OPS = {"VariableV2", "Variable", "VarHandleOp", "ReadVariableOp", "AssignVariableOp"}
NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault"}


def _plain(name: str) -> str:
    """A tensor's name as users write it: no ``:0`` port, no ``serving_default_`` prefix of a signature input."""
    return name.split(":")[0].removeprefix("serving_default_")


def match_inputs(declared: dict | None, model: list[tuple[str, list]], framework: str) -> dict[str, list[int]]:
    """The model's input name -> the declared shape. Names match without their ``:0`` or ``serving_default_``; a
    one-input model takes a one-input DataInputConfig by any name (AWS's examples call every input "input")."""
    if declared is None:
        raise InputConfiguration(f"DataInputConfig is required for {framework} models: {EXAMPLES[framework]}")
    names = [name for name, _ in model]
    by_plain = {_plain(name): name for name in names}
    matched: dict[str, list[int]] = {}
    for name, shape in declared.items():
        found = name if name in names else by_plain.get(_plain(name))
        if found is None and len(declared) == 1 and len(names) == 1:
            found = names[0]
        if found is None:
            raise InputConfiguration(
                f"DataInputConfig names an input the model does not have: {name!r}; it has {names}"
            )
        matched[found] = shape
    missing = sorted(set(names) - set(matched))
    if missing:
        raise InputConfiguration(f"DataInputConfig gives no shape for the model's inputs {missing}")
    return matched


def fits(shape: list[int], model_shape: list | None) -> bool:
    """A declared shape fits the model's where the ranks agree and every dimension the model fixes is the same."""
    if model_shape is None:  # unknown rank
        return True
    return len(shape) == len(model_shape) and all(m is None or m == d for m, d in zip(model_shape, shape))


def check_shapes(matched: dict[str, list[int]], model: list[tuple[str, list]], layout: str) -> None:
    for name, model_shape in model:
        if not fits(matched[name], model_shape):
            raise InputConfiguration(
                f"the shape {matched[name]} of input {name!r} does not fit the model's "
                f"{['?' if d is None else d for d in model_shape]} ({layout})"
            )


def _converted(tf2onnx_call, what: str):
    """Run a tf2onnx conversion; what it cannot convert is the user's model's, not a crash."""
    try:
        return tf2onnx_call()
    except InputConfiguration:
        raise
    except Exception as err:
        raise InputConfiguration(f"tf2onnx cannot convert the {what}: {type(err).__name__}: {str(err)[:500]}") from None


def _finish(
    source: Path, matched: dict[str, list[int]], options: dict, meta: dict, layouts: dict | None = None
) -> None:
    """Record the ONNX inputs with their declared shapes, then optimize the ONNX model as every framework's."""
    inputs = onnx_inputs(source)
    meta["Inputs"] = [{**i, "shape": matched[i["name"]]} for i in inputs]
    for item in meta["Inputs"]:
        if layouts and item["name"] in layouts:
            item["layout"] = layouts[item["name"]]
    optimize_onnx(source, options, meta)
    source.unlink()


def _first(output):
    """The first output of a model, flattened as tf2onnx orders outputs (dict outputs by sorted key)."""
    import numpy as np
    import tensorflow as tf

    return np.asarray(tf.nest.flatten(output)[0])


# -- KERAS ------------------------------------------------------------------------------------------------------


def keras(path: Path, declared, options: dict, meta: dict):
    import tensorflow as tf
    import tf2onnx

    try:
        model = tf.keras.models.load_model(str(path), compile=False)
    except Exception as err:
        raise InputConfiguration(f"Unable to load {path.name} with keras.models.load_model: {str(err)[:500]}") from None
    model_inputs = [(t.name.split(":")[0], list(t.shape)) for t in model.inputs]
    matched = match_inputs(declared, model_inputs, "KERAS")
    # Neo took Keras shapes NCHW although the model is channel-last, and its compiled model took NCHW input:
    # so does ours (tf2onnx transposes 4-D inputs at the graph's entry).
    nchw = [name for name, shape in model_inputs if len(shape) == 4]
    for name, shape in model_inputs:
        given = matched[name]
        if name in nchw and len(given) == 4:
            if not fits([given[0], given[2], given[3], given[1]], shape):
                if fits(given, shape):
                    raise InputConfiguration(
                        f"Input shapes should be provided in NCHW format: {name!r} {given} is the model's own NHWC "
                        f"shape; DataInputConfig takes it as {[given[0], given[3], given[1], given[2]]}"
                    )
                raise InputConfiguration(
                    f"the NCHW shape {given} of input {name!r} does not fit the model's NHWC "
                    f"{['?' if d is None else d for d in shape]}"
                )
        elif not fits(given, shape):
            raise InputConfiguration(f"the shape {given} of input {name!r} does not fit the model's {shape}")
    specs = [
        tf.TensorSpec([None, *shape[1:]], getattr(t, "dtype", None) or tf.float32, name=name)
        for (name, shape), t in zip(model_inputs, model.inputs)
    ]

    @tf.function(input_signature=specs)
    def forward(*xs):
        return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    source = MODEL_OUT / "source.onnx"
    _converted(
        lambda: tf2onnx.convert.from_function(
            forward, input_signature=specs, opset=OPSET, inputs_as_nchw=nchw or None, output_path=str(source)
        ),
        f"Keras model {path.name}",
    )
    say(f"SelfMaker: Keras {tf.keras.__version__} model -> tf2onnx (opset {OPSET}); NCHW inputs: {nchw or 'none'}")
    _finish(source, matched, options, meta, dict.fromkeys(nchw, "NCHW"))
    names = [name for name, _ in model_inputs]

    def original(feeds):
        xs = [feeds[n].transpose(0, 2, 3, 1) if n in nchw else feeds[n] for n in names]
        return _first(model(xs if len(xs) > 1 else xs[0], training=False))

    return original


# -- TFLITE -----------------------------------------------------------------------------------------------------


def _interpreter(path: Path):
    """LiteRT's interpreter where it is installed (TensorFlow's own is deprecated), else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    try:
        return Interpreter(model_path=str(path))
    except Exception as err:
        raise InputConfiguration(f"{path.name} is not a TFLite model the interpreter loads: {str(err)[:400]}") from None


def tflite(path: Path, declared, options: dict, meta: dict):
    import tf2onnx

    interpreter = _interpreter(path)
    details = interpreter.get_input_details()
    model_inputs = [(d["name"], [None if s < 0 else int(s) for s in d["shape_signature"]]) for d in details]
    matched = match_inputs(declared, model_inputs, "TFLITE")
    check_shapes(matched, model_inputs, "TFLite shapes are NHWC")
    source = MODEL_OUT / "source.onnx"
    _converted(
        lambda: tf2onnx.convert.from_tflite(str(path), opset=OPSET, output_path=str(source)), f"TFLite {path.name}"
    )
    say(f"SelfMaker: TFLite model -> tf2onnx (opset {OPSET})")
    import onnx

    first_output = onnx.load(str(source)).graph.output[0].name
    _finish(source, matched, options, meta)
    outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}

    def original(feeds):
        for d in details:
            interpreter.resize_tensor_input(d["index"], list(feeds[d["name"]].shape))
        interpreter.allocate_tensors()
        for d in details:
            interpreter.set_tensor(d["index"], feeds[d["name"]].astype(d["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(outputs.get(first_output, next(iter(outputs.values()))))

    return original


# -- TENSORFLOW: a SavedModel directory, or a frozen GraphDef ---------------------------------------------------


def tensorflow(path: Path, declared, options: dict, meta: dict):
    if path.stem == "saved_model":
        return saved_model(path.parent, declared, options, meta)
    return frozen_graph(path, declared, options, meta)


def saved_model(directory: Path, declared, options: dict, meta: dict):
    import tensorflow as tf
    import tf2onnx
    from tf2onnx import tf_loader

    where = directory.relative_to(MODEL_IN).as_posix() or "."
    key = options.get("signature_def_key", "serving_default")
    try:
        loaded = tf.saved_model.load(str(directory))
    except Exception as err:
        raise InputConfiguration(f"Unable to load the SavedModel in {where}: {str(err)[:500]}") from None
    if key not in loaded.signatures:
        raise InputConfiguration(
            f"the SavedModel has no signature {key!r}; it has {sorted(loaded.signatures)} "
            '(CompilerOptions {"signature_def_key": ...} chooses one)'
        )
    signature = loaded.signatures[key]
    _, by_name = signature.structured_input_signature
    model_inputs = [
        (name, spec.shape.as_list() if spec.shape.rank is not None else None) for name, spec in by_name.items()
    ]
    matched = match_inputs(declared, model_inputs, "TENSORFLOW")
    check_shapes(matched, model_inputs, "TensorFlow shapes are NHWC")

    def convert():
        graph_def, inputs, outputs, renamed = tf_loader.from_saved_model(
            str(directory), None, None, signatures=[key], return_tensors_to_rename=True
        )
        return tf2onnx.convert.from_graph_def(
            graph_def,
            input_names=inputs,
            output_names=outputs,
            opset=OPSET,
            tensors_to_rename=renamed,
            output_path=str(MODEL_OUT / "source.onnx"),
        )

    _converted(convert, f"SavedModel in {where} (signature {key!r})")
    say(f"SelfMaker: SavedModel {where}, signature {key!r} -> tf2onnx (opset {OPSET})")
    import onnx

    first_output = onnx.load(str(MODEL_OUT / "source.onnx")).graph.output[0].name  # named as the signature's
    _finish(MODEL_OUT / "source.onnx", matched, options, meta)
    if first_output not in signature.structured_outputs:
        first_output = sorted(signature.structured_outputs)[0]

    def original(feeds):
        return signature(**{name: tf.constant(value) for name, value in feeds.items()})[first_output].numpy()

    return original


def read_graph(path: Path):
    import tensorflow as tf
    from google.protobuf import text_format

    graph_def = tf.compat.v1.GraphDef()
    try:
        if path.suffix == ".pbtxt":
            text_format.Parse(path.read_text(), graph_def)
        else:
            graph_def.ParseFromString(path.read_bytes())
    except Exception:
        raise InputConfiguration(
            f"{path.name} is not a TensorFlow GraphDef (a SavedModel's graph must be named saved_model.pb, "
            "beside its variables/ directory)"
        ) from None
    return graph_def


def graph_outputs(graph_def, options: dict) -> list[str]:
    """The outputs a frozen graph is cut at: CompilerOptions ``output_names`` (Neo's key), else the one node whose
    outputs nothing consumes (Const, NoOp and placeholders aside). Several such nodes: which one answers is the
    user's to say."""
    nodes = {node.name: node for node in graph_def.node}
    named = options.get("output_names")
    if named is not None:
        if not (isinstance(named, list) and named and all(isinstance(n, str) for n in named)):
            raise InputConfiguration('CompilerOptions output_names must be a list of tensor names: ["output:0"]')
        unknown = [n for n in named if n.split(":")[0] not in nodes]
        if unknown:
            raise InputConfiguration(f"CompilerOptions output_names names nodes the graph does not have: {unknown}")
        return [n if ":" in n else f"{n}:0" for n in named]
    consumed = {name.lstrip("^").split(":")[0] for node in graph_def.node for name in node.input}
    ends = [node.name for node in graph_def.node if node.name not in consumed and node.op not in NOT_OUTPUTS]
    if len(ends) != 1:
        raise InputConfiguration(
            f"cannot tell the frozen graph's output: {len(ends)} nodes end it ({ends[:10]}); name it in "
            'CompilerOptions {"output_names": ["<node>:0"]}'
        )
    return [f"{ends[0]}:0"]


def frozen_graph(path: Path, declared, options: dict, meta: dict):
    import tensorflow as tf
    import tf2onnx

    graph_def = read_graph(path)
    variables = sorted({node.op for node in graph_def.node if node.op in VARIABLE_OPS})
    if variables:
        raise InputConfiguration(
            f"{path.name} is not a frozen graph: it reads variables ({', '.join(variables)}) whose values it does "
            "not hold; freeze it (convert_variables_to_constants_v2) or upload the SavedModel directory"
        )
    placeholders = [node for node in graph_def.node if node.op == "Placeholder"]
    if not placeholders:
        raise InputConfiguration(f"the graph {path.name} has no Placeholder: it takes no input")
    model_inputs = [
        (
            f"{node.name}:0",
            None
            if node.attr["shape"].shape.unknown_rank
            else [d.size if d.size >= 0 else None for d in node.attr["shape"].shape.dim],
        )
        for node in placeholders
    ]
    matched = match_inputs(declared, model_inputs, "TENSORFLOW")
    check_shapes(matched, model_inputs, "TensorFlow shapes are NHWC")
    outputs = graph_outputs(graph_def, options)
    unknown_rank = {name: matched[name] for name, shape in model_inputs if shape is None}
    source = MODEL_OUT / "source.onnx"
    _converted(
        lambda: tf2onnx.convert.from_graph_def(
            graph_def,
            input_names=list(matched),
            output_names=outputs,
            opset=OPSET,
            shape_override=unknown_rank or None,
            output_path=str(source),
        ),
        f"frozen graph {path.name}",
    )
    say(f"SelfMaker: frozen graph {path.name} -> tf2onnx (opset {OPSET}); outputs {outputs}")
    _finish(source, matched, options, meta)
    names = list(matched)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    run = wrapped.prune(
        [wrapped.graph.get_tensor_by_name(n) for n in names], wrapped.graph.get_tensor_by_name(outputs[0])
    )

    def original(feeds):
        return run(*(tf.constant(feeds[n]) for n in names)).numpy()

    return original


CONVERTERS = {"KERAS": keras, "TFLITE": tflite, "TENSORFLOW": tensorflow}
