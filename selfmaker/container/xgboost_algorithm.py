"""The SageMaker built-in XGBoost algorithm, as the sagemaker-xgboost image runs it without a script.

``python -m selfmaker.container.xgboost_algorithm`` inside the sandbox (the
training toolkit runs it when the job has no ``sagemaker_program``). It does
what the algorithm mode of sagemaker-xgboost-container does on one instance:

* hyperparameters validated as the algorithm validates them (``num_round``
  required, ranges, categories, ``num_class`` for multi-class objectives), a
  failure written to /opt/ml/output/failure as ``ClientError: ...``;
* the ``train`` and optional ``validation`` channels read as CSV (label in the
  first column, no header; ``csv_weights=1`` takes weights from the second) or
  libsvm, by each channel's ContentType (default ``text/libsvm``);
* ``xgboost.train`` with an evaluation line per round printed as CloudWatch
  shows the real one, ``[3]#011train-rmse:0.41230#011validation-rmse:0.43310``
  (the container prints tabs; CloudWatch stores them as ``#011``, and every
  published metric regex expects that), so :data:`METRIC_DEFINITIONS` fill
  FinalMetricDataList;
* the booster saved as /opt/ml/model/xgboost-model with ``Booster.save_model``
  (the container's format, which its serving code and ``xgb.Booster().load_model`` read).

With several instances it trains distributed as the container does (its
``distributed.rabit_run``): a Rabit tracker on the first host, every instance
one worker, histograms allreduced each round, so all hold the same booster and
only the first worker (algo-1, normally) writes the model. Two rounds of the
tracker, as there: first every host says whether it got training data (a
ShardedByS3Key channel may leave one without), then only those train. A
ShardedByS3Key channel's files are each instance's share; a FullyReplicated
channel is the same on every instance, so worker r of n keeps its rows
r, r+n, r+2n, ...: every row counts once, and the model equals the one an
instance alone trains on the same data (SelfMaker's choice where the AWS
documentation says nothing; see docs/jobs.md).

Importing this module needs only the standard library (the server reads its
metric definitions); xgboost and numpy are imported when it trains. Start-up is
a tuning trial's fixed cost, so the job imports only what it uses: xgboost
without the pandas and scikit-learn it would load for APIs the algorithm never
calls (:func:`_unused_packages_hidden`) and with scipy.special deferred until a
function of it is called (:func:`import_xgboost`), CSV read by numpy (pandas only
for what numpy refuses: empty fields, ragged files).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import sys
import tempfile
import types
from pathlib import Path

BASE = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
MODEL_NAME = "xgboost-model"
# The tracker's ports on the first host, one per round (the container's 9099 and 9100).
HOSTS_PORT, TRAINING_PORT = 9099, 9100
CONNECT_RETRIES = "60"  # workers retry the tracker while the first host still loads its data
CSV, LIBSVM = "text/csv", "text/libsvm"
DEFAULT_CONTENT_TYPE = LIBSVM

# Metric names as the algorithm publishes them (sagemaker_xgboost_container.constants.xgb_constants).
MAXIMIZE_METRICS = (
    "accuracy",
    "auc",
    "aucpr",
    "balanced_accuracy",
    "f1",
    "f1_binary",
    "f1_macro",
    "map",
    "ndcg",
    "precision",
    "r2",
    "recall",
    "precision_macro",
    "precision_micro",
    "recall_macro",
    "recall_micro",
)
MINIMIZE_METRICS = (
    "aft-nloglik",
    "cox-nloglik",
    "error",
    "gamma-deviance",
    "gamma-nloglik",
    "interval-regression-accuracy",
    "logloss",
    "mae",
    "mape",
    "merror",
    "mlogloss",
    "mphe",
    "mse",
    "poisson-nloglik",
    "rmse",
    "rmsle",
    "tweedie-nloglik",
)
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
METRIC_DEFINITIONS = [
    {"Name": f"{channel}:{metric}", "Regex": f".*\\[[0-9]+\\].*#011{channel}-{metric}:{_NUMBER}.*"}
    for channel in ("train", "validation")
    for metric in (*MAXIMIZE_METRICS, *MINIMIZE_METRICS)
]

log = logging.getLogger("selfmaker.xgboost")

# Packages xgboost imports at start-up when installed (xgboost.compat: its DataFrame input and scikit-learn
# estimators), about a second of every job's start on one core; the algorithm uses neither through xgboost.
_NOT_FOR_XGBOOST = ("pandas", "sklearn")
# Modules xgboost imports at start-up for functions the algorithm never calls: scipy.special (about 0.1 s: SciPy
# rewrites the docstrings of its functions at import), for the softmax of XGBClassifier.predict_proba
# (xgboost.sklearn). While xgboost imports, they are stand-ins whose functions import the real module when called.
_DEFERRED_FOR_XGBOOST: dict[str, tuple[str, ...]] = {"scipy.special": ("softmax",)}


class UserError(Exception):
    """A failure the user can fix (the algorithm's ClientError)."""


def builtin_metric_definitions() -> list[dict]:
    """The algorithm's own metric definitions, which SageMaker applies to every job of the image."""
    return [dict(d) for d in METRIC_DEFINITIONS]


# -- hyperparameters ---------------------------------------------------------------------------------------------


def _interval(low=None, high=None, low_open=False, high_open=False):
    def check(value):
        return not (
            (low is not None and (value <= low if low_open else value < low))
            or (high is not None and (value >= high if high_open else value > high))
        )

    text = (
        f"{'(' if low_open or low is None else '['}{'-inf' if low is None else low}, "
        f"{'+inf' if high is None else high}{')' if high_open or high is None else ']'}"
    )
    return check, text


def _categories(*values):
    return (lambda value: value in values), str(list(values))


OBJECTIVES = (
    "binary:hinge",
    "binary:logistic",
    "binary:logitraw",
    "count:poisson",
    "multi:softmax",
    "multi:softprob",
    "rank:map",
    "rank:ndcg",
    "rank:pairwise",
    "reg:absoluteerror",
    "reg:gamma",
    "reg:linear",
    "reg:logistic",
    "reg:pseudohubererror",
    "reg:squarederror",
    "reg:squaredlogerror",
    "reg:tweedie",
    "survival:aft",
    "survival:cox",
)
EVAL_METRICS = (*MAXIMIZE_METRICS, *MINIMIZE_METRICS)

# name -> (parse, (check, range text) or None). num_round is the one required hyperparameter.
HYPERPARAMETERS = {
    "num_round": (int, _interval(1)),
    "early_stopping_rounds": (int, _interval(1)),
    "booster": (str, _categories("gbtree", "gblinear", "dart")),
    "verbosity": (int, _interval(0, 3)),
    "nthread": (int, _interval(1)),
    "eta": (float, _interval(0, 1)),
    "gamma": (float, _interval(0)),
    "max_depth": (int, _interval(0)),
    "min_child_weight": (float, _interval(0)),
    "max_delta_step": (float, _interval(0)),
    "subsample": (float, _interval(0, 1, low_open=True)),
    "sampling_method": (str, _categories("uniform", "gradient_based")),
    "colsample_bytree": (float, _interval(0, 1, low_open=True)),
    "colsample_bylevel": (float, _interval(0, 1, low_open=True)),
    "colsample_bynode": (float, _interval(0, 1, low_open=True)),
    "lambda": (float, _interval(0)),
    "alpha": (float, _interval(0)),
    "tree_method": (str, _categories("auto", "exact", "approx", "hist", "gpu_hist")),
    "sketch_eps": (float, _interval(0, 1, low_open=True, high_open=True)),
    "scale_pos_weight": (float, _interval(0, low_open=True)),
    "updater": (lambda v: v.split(","), None),
    "refresh_leaf": (int, _categories(0, 1)),
    "process_type": (str, _categories("default", "update")),
    "grow_policy": (str, _categories("depthwise", "lossguide")),
    "max_leaves": (int, _interval(0)),
    "max_bin": (int, _interval(1)),
    "num_parallel_tree": (int, _interval(1)),
    "sample_type": (str, _categories("uniform", "weighted")),
    "normalize_type": (str, _categories("tree", "forest")),
    "rate_drop": (float, _interval(0, 1)),
    "one_drop": (int, _categories(0, 1)),
    "skip_drop": (float, _interval(0, 1)),
    "tweedie_variance_power": (float, _interval(1, 2, low_open=True, high_open=True)),
    "objective": (str, _categories(*OBJECTIVES)),
    "num_class": (int, _interval(2)),
    "base_score": (float, None),
    "eval_metric": (lambda v: v.split(","), None),
    "seed": (int, None),
    "csv_weights": (int, _categories(0, 1)),
    "max_cat_to_onehot": (int, _interval(1)),
    "huber_slope": (float, None),
    "aft_loss_distribution": (str, _categories("normal", "logistic", "extreme")),
    "aft_loss_distribution_scale": (float, _interval(0, low_open=True)),
    "monotone_constraints": (str, None),
    "interaction_constraints": (str, None),
}
# Parameters of the algorithm itself, not passed to xgboost.train's params.
ALGORITHM_ONLY = {"num_round", "early_stopping_rounds", "csv_weights"}


def validate(raw: dict) -> dict:
    """Parsed, validated hyperparameters; raises UserError with the algorithm's messages."""
    given = {k: v for k, v in raw.items() if not k.startswith("sagemaker_") and not k.startswith("_")}
    if "num_round" not in given:
        raise UserError("Missing required hyperparameter: num_round")
    parsed = {}
    for name, value in given.items():
        if name not in HYPERPARAMETERS:
            raise UserError(f"Extraneous hyperparameter found: {name}")
        parse, valid = HYPERPARAMETERS[name]
        try:
            parsed[name] = parse(str(value).strip())
        except ValueError:
            raise UserError(f"Hyperparameter {name}: could not parse value (caused by ValueError)") from None
        if valid is not None and not valid[0](parsed[name]):
            raise UserError(f"Hyperparameter {name}: {parsed[name]} is not in {valid[1]}")
    for metric in parsed.get("eval_metric", []):
        base = metric.split("@")[0]
        if base not in EVAL_METRICS:
            raise UserError(
                f"Hyperparameter eval_metric: value {parsed['eval_metric']} not in range {list(EVAL_METRICS)}"
            )
    objective = parsed.get("objective", "reg:squarederror")
    if objective.startswith("multi:") and "num_class" not in parsed:
        raise UserError("Require input for parameter num_class for multi-classification")
    if "num_class" in parsed and not objective.startswith("multi:"):
        raise UserError(f"Do not need to setup parameter num_class for learning task {objective}")
    return parsed


def booster_params(hyperparameters: dict) -> dict:
    params = {"objective": "reg:squarederror"}
    params.update({k: v for k, v in hyperparameters.items() if k not in ALGORITHM_ONLY})
    return params


class _Hidden:
    """A finder that makes pandas and scikit-learn look not installed while the algorithm runs."""

    @staticmethod
    def find_spec(name, path=None, target=None):  # None (any other name): the next finder looks
        if name.partition(".")[0] in _NOT_FOR_XGBOOST:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


_HIDDEN = _Hidden()


@contextlib.contextmanager
def _unused_packages_hidden():
    """xgboost imports pandas and scikit-learn at start-up and probes for pandas (``import pandas``) at
    every DMatrix; hidden, it takes them as not installed, which changes nothing for numpy input."""
    sys.meta_path.insert(0, _HIDDEN)
    try:
        yield
    finally:
        sys.meta_path.remove(_HIDDEN)


class _DeferredModule(types.ModuleType):
    """Stands in for a module while xgboost imports: the names in ``calls`` are functions that import the real
    module when first called; any other name imports it at once and is the real one."""

    def __init__(self, name: str, calls: tuple[str, ...]):
        super().__init__(name)
        for call in calls:
            setattr(self, call, self._forward(call))

    def _real(self) -> types.ModuleType:
        if sys.modules.get(self.__name__) is self:  # asked for while it still stands in: it steps aside
            del sys.modules[self.__name__]
        return importlib.import_module(self.__name__)

    def _forward(self, call: str):
        def forwarded(*args, **kwargs):
            return getattr(self._real(), call)(*args, **kwargs)

        forwarded.__name__ = forwarded.__qualname__ = call
        return forwarded

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):  # the import system probing it (__path__: a package?): it is not
            raise AttributeError(attribute)
        return getattr(self._real(), attribute)


@contextlib.contextmanager
def _deferred_while_importing(deferred: dict[str, tuple[str, ...]]):
    """The modules ``deferred`` names are stand-ins (:class:`_DeferredModule`) for the duration, and gone after
    it: a later import of one, or a stand-in function called, imports the real module."""
    stand_ins = {name: _DeferredModule(name, calls) for name, calls in deferred.items() if name not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
            parent, _, child = name.rpartition(".")
            namespace = vars(sys.modules[parent]) if parent in sys.modules else {}
            if namespace.get(child) is stand_in:  # (not getattr: SciPy's would import the submodule)
                del namespace[child]


def import_xgboost():
    """xgboost, imported without what the algorithm never uses (:data:`_DEFERRED_FOR_XGBOOST`)."""
    with _deferred_while_importing(_DEFERRED_FOR_XGBOOST):
        import xgboost

    return xgboost


def _pandas():
    """pandas, for the rare CSV numpy refuses (visible again for this import only)."""
    hidden = _HIDDEN in sys.meta_path
    if hidden:
        sys.meta_path.remove(_HIDDEN)
    try:
        import pandas

        return pandas
    finally:
        if hidden:
            sys.meta_path.insert(0, _HIDDEN)


# -- data --------------------------------------------------------------------------------------------------------


def content_type(channel_config: dict) -> str:
    """text/csv or text/libsvm from a channel's ContentType (parameters such as label_size allowed)."""
    value = (channel_config.get("ContentType") or DEFAULT_CONTENT_TYPE).strip()
    kind, _, parameters = value.partition(";")
    kind = kind.strip().lower()
    if kind in ("csv", CSV):
        for parameter in filter(None, (p.strip() for p in parameters.split(";"))):
            key, _, size = parameter.partition("=")
            if key.strip() == "label_size" and size.strip() != "1":
                raise UserError(
                    f"{value} is not an accepted csv ContentType. Optional parameter label_size must be equal to 1"
                )
        return CSV
    if kind in ("libsvm", LIBSVM, "text/x-libsvm"):
        return LIBSVM
    if kind in ("parquet", "application/x-parquet", "recordio-protobuf", "application/x-recordio-protobuf"):
        raise UserError(
            f"Content type {value} is not supported by SelfMaker's XGBoost algorithm yet; use text/csv or text/libsvm"
        )
    raise UserError(f"Content type {value} is not supported by this algorithm.")


def data_files(directory: Path) -> list[Path]:
    """The channel's files, recursively, without hidden files (as the algorithm reads a channel)."""
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def read_csv(directory: Path, files: list[Path]):
    """The channel's CSV files as one float32 array: numpy's reader, else pandas for what it refuses (an
    empty field, which is a missing value, or files of different widths)."""
    import numpy as np

    try:
        arrays = [np.loadtxt(f, delimiter=",", dtype=np.float32, ndmin=2) for f in files]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    except ValueError:
        pass
    pd = _pandas()
    try:
        frames = [pd.read_csv(f, header=None, dtype="float32", engine="c") for f in files]
    except ValueError as e:
        raise UserError(
            f"Could not read the CSV data of {directory.name} (label first, no header, numbers only): {e}"
        ) from None
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return table.to_numpy()


def load(directory: Path, kind: str, csv_weights: bool):
    """A DMatrix of a channel's files."""
    import xgboost as xgb

    files = [f for f in data_files(directory) if f.stat().st_size > 0]
    if not files:
        raise UserError(f"No data in the channel: {directory.name} (its directory holds no non-empty files)")
    if kind == CSV:
        values = read_csv(directory, files)
        first = 2 if csv_weights else 1
        if values.shape[1] <= first:
            raise UserError(
                f"The CSV data of {directory.name} has no feature columns after the label"
                f"{' and weight' if csv_weights else ''}"
            )
        return xgb.DMatrix(
            values[:, first:], label=values[:, 0], weight=values[:, 1] if csv_weights else None, nthread=-1
        )
    if len(files) == 1:
        source = files[0]
    else:  # libsvm is line-oriented: one file holding all of them reads as the channel does
        handle, name = tempfile.mkstemp(suffix=".libsvm")
        with os.fdopen(handle, "wb") as out:
            for f in files:
                data = f.read_bytes()
                out.write(data if data.endswith(b"\n") else data + b"\n")
        source = Path(name)
    try:
        return xgb.DMatrix(f"{source}?format=libsvm")
    except xgb.core.XGBoostError as e:
        raise UserError(f"Could not read the libsvm data of {directory.name}: {str(e).splitlines()[0]}") from None


# -- training ----------------------------------------------------------------------------------------------------


def _log_evaluations():
    """An xgboost callback printing each round as the algorithm's log shows it in CloudWatch."""
    import xgboost as xgb

    class CloudWatchEvaluationLine(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            line = f"[{epoch}]" + "".join(
                f"#011{data}-{metric}:{history[-1]:.5f}"
                for data, metrics in evals_log.items()
                for metric, history in metrics.items()
            )
            print(line, flush=True)
            return False

    return CloudWatchEvaluationLine()


def train(base: Path = BASE) -> None:

    config = base / "input" / "config"
    raw = (
        json.loads((config / "hyperparameters.json").read_text()) if (config / "hyperparameters.json").exists() else {}
    )
    hyperparameters = validate(raw)
    channels = (
        json.loads((config / "inputdataconfig.json").read_text()) if (config / "inputdataconfig.json").exists() else {}
    )
    if "train" not in channels:
        raise UserError("No data in the channel: train. Provide a train channel.")
    unknown = sorted(set(channels) - {"train", "validation"})
    if unknown:
        raise UserError(f"Channels {unknown} are not accepted by this algorithm: use train and validation")
    resource = (
        json.loads((config / "resourceconfig.json").read_text()) if (config / "resourceconfig.json").exists() else {}
    )
    hosts = resource.get("hosts") or ["algo-1"]
    current = resource.get("current_host") or hosts[0]

    log.info("Determined 0 GPU(s) available on the instance.")
    csv_weights = bool(hyperparameters.get("csv_weights"))
    matrices = {}
    for name in ("train", "validation"):
        if name in channels:
            kind = content_type(channels[name])
            log.info("files path: %s", base / "input" / "data" / name)
            try:
                matrices[name] = load(base / "input" / "data" / name, kind, csv_weights and kind == CSV)
            except UserError:
                if len(hosts) == 1:
                    raise
                if name != "train":  # every worker must evaluate the same sets, or the allreduce never meets
                    raise UserError(
                        f"No data in the channel: {name} on {current}; with ShardedByS3Key give it at least as "
                        "many files as instances"
                    ) from None
                log.warning("Host %s does not have data. Will not be used in distributed training.", current)
    if len(hosts) == 1:
        log.info("Single node training.")
        _describe(matrices)
        _save(base, _train(hyperparameters, matrices))
        return
    log.info("Distributed node training with %d hosts: %s", len(hosts), hosts)
    with_data = _hosts_with_data(hosts, current, "train" in matrices)
    if not with_data:
        raise UserError("No data in the channel: train (no instance got any of its files)")
    if current not in with_data:
        log.info("Host %s has no training data: it ends without training.", current)
        return
    rank, size = with_data.index(current), len(with_data)
    for name, matrix in list(matrices.items()):
        if channels[name].get("S3DistributionType", "FullyReplicated") == "FullyReplicated":
            import numpy as np

            matrices[name] = matrix.slice(np.arange(rank, matrix.num_row(), size))  # this worker's rows
    _describe(matrices)
    with _collective(with_data, current, TRAINING_PORT):
        booster = _train(hyperparameters, matrices)
    if rank == 0:  # the master writes the model, as the container does
        _save(base, booster)


def _describe(matrices: dict) -> None:
    dtrain = matrices["train"]
    log.info("Train matrix has %d rows and %d columns", dtrain.num_row(), dtrain.num_col())
    if "validation" in matrices:
        log.info("Validation matrix has %d rows", matrices["validation"].num_row())


def _save(base: Path, booster) -> None:
    model_dir = base / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(model_dir / MODEL_NAME))


def _hosts_with_data(hosts: list[str], current: str, has_data: bool) -> list[str]:
    """The first round of the tracker: every host says whether it has training data; those that do, in order."""
    import numpy as np
    from xgboost import collective

    flags = np.zeros(len(hosts), dtype=np.float64)
    flags[hosts.index(current)] = 1.0 if has_data else 0.0
    with _collective(hosts, current, HOSTS_PORT):
        flags = collective.allreduce(flags, collective.Op.SUM)
    return [host for host, flag in zip(hosts, flags) if flag > 0]


class _collective:
    """Rabit among ``workers`` (host names, the first runs the tracker on ``port`` at its own address); ranks
    follow the list's order."""

    def __init__(self, workers: list[str], current: str, port: int):
        self.workers, self.current, self.port = workers, current, port
        self.tracker = None

    def __enter__(self):
        from xgboost import collective

        master = socket.gethostbyname(self.workers[0])  # algo-<i> resolve through the instance's /etc/hosts
        if self.current == self.workers[0]:
            from xgboost.tracker import RabitTracker

            self.tracker = RabitTracker(host_ip=master, n_workers=len(self.workers), port=self.port, sortby="task")
            self.tracker.start(len(self.workers))
        collective.init(
            DMLC_TRACKER_URI=master,
            DMLC_TRACKER_PORT=self.port,
            DMLC_TASK_ID=f"{self.workers.index(self.current):05d}",
            DMLC_WORKER_CONNECT_RETRY=CONNECT_RETRIES,
        )
        log.info("Rabit started: rank %d of %d", collective.get_rank(), collective.get_world_size())
        return self

    def __exit__(self, *exc) -> None:
        from xgboost import collective

        collective.finalize()
        if self.tracker is not None:
            self.tracker.join()


def _train(hyperparameters: dict, matrices: dict):
    import xgboost as xgb

    dtrain = matrices["train"]
    params = booster_params(hyperparameters)
    try:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=hyperparameters["num_round"],
            evals=[(matrix, name) for name, matrix in matrices.items()],
            early_stopping_rounds=hyperparameters.get("early_stopping_rounds"),
            verbose_eval=False,
            callbacks=[_log_evaluations()],
        )
    except xgb.core.XGBoostError as e:
        message = str(e).splitlines()[0]
        raise (
            UserError(message)
            if "Check failed" in message or "label" in message or "mismatch" in message
            else RuntimeError(f"XGB train call failed with exception:\n {message}")
        ) from None
    return booster


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s:%(levelname)s] %(message)s", stream=sys.stdout)
    failure = BASE / "output" / "failure"
    try:
        with _unused_packages_hidden():
            import_xgboost()
            train(BASE)
        return 0
    except UserError as e:
        message = f"ClientError: {e}"
    except Exception as e:  # anything else is the algorithm's fault, reported as the container reports it
        message = f"AlgorithmError: {e}"
    failure.parent.mkdir(parents=True, exist_ok=True)
    failure.write_text(message)
    print(message, file=sys.stderr, flush=True)
    return 1


def exit_now(code: int) -> None:
    """End the process once its output is flushed, skipping the interpreter's teardown: freeing every module
    and object one by one (numpy's, xgboost's) costs a trial ~25 ms of CPU, more wall time on a busy host,
    for memory the kernel frees at once. Everything the job leaves (model, failure file) is written and closed."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
