"""Tuning benchmark: a SelfMaker hyperparameter tuning job against Optuna called directly, same search.

The training function is a tiny one with a known objective (maximum 11 at x=3, y=1, kind=b),
which first runs a busy loop for a fixed wall time (``--work`` seconds, standing in for
training), on an image mapped to the host's Python: no runtime build or framework import blurs
what SelfMaker adds around each trial. The same source runs in both arms: in SelfMaker as the
training job's script (its objective printed and captured by MetricDefinitions), directly as a
function Optuna's ``study.optimize`` calls in this process. Both search the same space (two
continuous ranges and one categorical) with TPE (SelfMaker's ``Bayesian``) for the same budget.

Measured, from the server's own records:

* the best objective each arm found;
* per trial, the training job's own time (TrainingStartTime -> TrainingEndTime of
  DescribeTrainingJob) against the tuning job's wall time (CreationTime ->
  HyperParameterTuningEndTime) divided by the trials; the overhead per trial is the slot time
  not spent training: (wall x parallel - sum of own times) / trials (goal: <= 0.5 s);
* the whole cost per trial beyond the training function: wall x parallel / trial - ``--work`` (for SelfMaker
  it adds the training job's own start and end: sandbox, Python start-up, log and model upload);
* with MaxParallelTrainingJobs 1, the hand-off: a trial's TrainingEndTime to the next trial's
  CreationTime (the controller's reaction and Optuna's ask), and a trial's CreationTime to its
  TrainingStartTime (the training job's own start).

With ``--algorithm xgboost`` the training is the built-in XGBoost (sagemaker-xgboost 1.7-1) on
generated regression data (``--rows`` rows of 20 features, a fifth as many for validation),
minimizing ``validation:rmse`` over eta (log scale), subsample and max_depth, 30 rounds each. The
Optuna arm runs inside the XGBoost runtime SelfMaker built (its Python, Optuna appended to its
path, the environment SelfMaker gives its jobs: OpenMP threads waiting passively):
``study.optimize`` calling ``xgboost.train`` on the same CSV files, loaded once, with the same
parameters. There the "work" is the Optuna arm's own median ``xgboost.train`` time, so the last
column is everything a SelfMaker trial costs beyond the training call: the job's Python and xgboost
start-up, data loading, model upload and the tuning job's hand-off.

    python benchmarks/tuning.py [--trials 20] [--work 1.0] [--parallel 1 2] [--seeds 100 200 300]
    python benchmarks/tuning.py --algorithm xgboost [--rows 5000] [--rounds 30] [--runtimes-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import boto3
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, machine, selfmaker_server, table

IMAGE = "selfmaker.bench/tuning:1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "bench-tuning"
BEST = 11.0  # the objective's maximum: x=3, y=1, kind=b

# The training function, shared by both arms. ``train(hp)`` busy-loops for ``work`` seconds (the
# "training"), then returns the known objective of the hyperparameters (strings, as AWS passes them).
TRAIN_FUNCTION = """
import time
def train(hp):
    end = time.perf_counter() + float(hp.get("work", 0))
    n = 0
    while time.perf_counter() < end:
        n += 1
    x, y = float(hp["x"]), float(hp["y"])
    bonus = {"a": 0.0, "b": 1.0, "c": 0.5}[hp["kind"]]
    return 10 - (x - 3) ** 2 - (y - 1) ** 2 + bonus
"""
TRAIN_SCRIPT = (
    TRAIN_FUNCTION
    + """
import json
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
print(f"objective={train(hp):.6f}")
open("/opt/ml/model/model.txt", "w").write("ok")
"""
)
METRICS = [{"Name": "objective", "Regex": r"objective=([-0-9.e]+)"}]
RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "x", "MinValue": "-5", "MaxValue": "10"},
        {"Name": "y", "MinValue": "-5", "MaxValue": "5"},
    ],
    "CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "b", "c"]}],
}


# The environment SelfMaker's jobs get by default (services/jobs/lifecycle.py, SHARED_HOST_ENVIRONMENT), given to
# the direct arm too, so that both run the same training: OpenMP's idle threads wait passively.
JOB_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
XGBOOST_ROUNDS = 30
XGBOOST_RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.05", "MaxValue": "0.5", "ScalingType": "Logarithmic"},
        {"Name": "subsample", "MinValue": "0.5", "MaxValue": "1"},
    ],
    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "8"}],
}
# The Optuna arm of the XGBoost variant, run by the XGBoost runtime's Python: argv = train.csv, validation.csv,
# trials, seed, the site-packages holding Optuna (appended: the runtime's own numpy and xgboost come first), rounds.
XGBOOST_DIRECT = """
import json, sys, time
sys.path.append(sys.argv[5])
import optuna, pandas as pd, xgboost as xgb
optuna.logging.set_verbosity(optuna.logging.WARNING)
def matrix(path):
    values = pd.read_csv(path, header=None, dtype="float32", engine="c").to_numpy()
    return xgb.DMatrix(values[:, 1:], label=values[:, 0])
train, validation = matrix(sys.argv[1]), matrix(sys.argv[2])
own = []
def objective(trial):
    params = {"objective": "reg:squarederror", "eta": trial.suggest_float("eta", 0.05, 0.5, log=True),
              "subsample": trial.suggest_float("subsample", 0.5, 1.0), "max_depth": trial.suggest_int("max_depth", 2, 8)}
    began, result = time.perf_counter(), {}
    xgb.train(params, train, num_boost_round=int(sys.argv[6]), evals=[(train, "train"), (validation, "validation")],
              evals_result=result, verbose_eval=False)
    own.append(time.perf_counter() - began)
    return result["validation"]["rmse"][-1]
study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=int(sys.argv[4])))
began = time.perf_counter()
study.optimize(objective, n_trials=int(sys.argv[3]))
print("RESULT " + json.dumps({"best": study.best_value, "best_params": study.best_params,
                              "wall": time.perf_counter() - began, "own": own}))
"""


def regression_csv(rows: int, seed: int) -> str:
    generator = random.Random(seed)
    lines = []
    for _ in range(rows):
        features = [generator.random() for _ in range(20)]
        label = 3 * features[0] - 2 * features[1] * features[2] + features[3] ** 2 + generator.gauss(0, 0.1)
        lines.append(",".join(f"{v:.6f}" for v in [label, *features]))
    return "\n".join(lines) + "\n"


def xgboost_request(name: str, trials: int, parallel: int, seed: int, rounds: int = XGBOOST_ROUNDS) -> dict:
    """The XGBoost variant's tuning job: the built-in algorithm, its validation:rmse minimized."""
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "validation:rmse"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": XGBOOST_RANGES,
            "RandomSeed": seed,
        },
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
            "StaticHyperParameters": {"objective": "reg:squarederror", "num_round": str(rounds)},
            "RoleArn": ROLE,
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "ContentType": "text/csv",
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/xgb/{channel}/"}
                    },
                }
                for channel in ("train", "validation")
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        },
    }


def run_optuna_xgboost(python: Path, data: Path, trials: int, seed: int, rounds: int) -> dict:
    site = str(Path(optuna.__file__).resolve().parent.parent)
    done = subprocess.run(
        [
            str(python),
            "-c",
            XGBOOST_DIRECT,
            str(data / "train.csv"),
            str(data / "validation.csv"),
            str(trials),
            str(seed),
            site,
            str(rounds),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **JOB_ENVIRONMENT},
    )
    r = json.loads(done.stdout.split("RESULT ")[-1])
    r.update(overhead=(r["wall"] - sum(r["own"])) / trials, slots=1)
    return r


def _train():
    namespace: dict = {}
    exec(TRAIN_FUNCTION, namespace)
    return namespace["train"]


def tuning_request(name: str, trials: int, parallel: int, work: float, seed: int) -> dict:
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "objective"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": RANGES,
            "RandomSeed": seed,
        },
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": METRICS,
            },
            "StaticHyperParameters": {"work": repr(work)},
            "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        },
    }


def run_selfmaker(sm, name: str, trials: int, parallel: int, work: float, seed: int, request=None) -> dict:
    sm.create_hyper_parameter_tuning_job(**(request or tuning_request(name, trials, parallel, work, seed)))
    while True:
        job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if job["HyperParameterTuningJobStatus"] not in ("InProgress", "Stopping"):
            break
        time.sleep(0.5)
    if job["HyperParameterTuningJobStatus"] != "Completed":
        raise RuntimeError(f"{name}: {job['HyperParameterTuningJobStatus']}: {job.get('FailureReason')}")
    summaries = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, MaxResults=100, SortBy="CreationTime", SortOrder="Ascending"
    )["TrainingJobSummaries"]
    jobs = [sm.describe_training_job(TrainingJobName=s["TrainingJobName"]) for s in summaries]
    if len(jobs) != trials or any(j["TrainingJobStatus"] != "Completed" for j in jobs):
        raise RuntimeError(f"{name}: expected {trials} completed trials, got {[j['TrainingJobStatus'] for j in jobs]}")
    own = [j["TrainingEndTime"].timestamp() - j["TrainingStartTime"].timestamp() for j in jobs]
    starts = [j["TrainingStartTime"].timestamp() - j["CreationTime"].timestamp() for j in jobs]
    # One at a time, each trial is created after the previous one ended: the gap is SelfMaker's hand-off.
    handoffs = [b["CreationTime"].timestamp() - a["TrainingEndTime"].timestamp() for a, b in pairwise(jobs)]
    if parallel > 1:
        handoffs = []
    wall = job["HyperParameterTuningEndTime"].timestamp() - job["CreationTime"].timestamp()
    effective = min(parallel, len(os.sched_getaffinity(0)))  # the host caps MaxParallelTrainingJobs
    return {
        "best": job["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
        "best_params": job["BestTrainingJob"]["TunedHyperParameters"],
        "wall": wall,
        "own": own,
        "starts": starts,
        "handoffs": handoffs,
        "overhead": (wall * effective - sum(own)) / trials,
        "slots": effective,
    }


def run_optuna(trials: int, work: float, seed: int) -> dict:
    train, own = _train(), []

    def objective(trial: optuna.Trial) -> float:
        hp = {
            "x": trial.suggest_float("x", -5, 10),
            "y": trial.suggest_float("y", -5, 5),
            "kind": trial.suggest_categorical("kind", ["a", "b", "c"]),
            "work": work,
        }
        began = time.perf_counter()
        value = train(hp)
        own.append(time.perf_counter() - began)
        return value

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    began = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - began
    return {
        "best": study.best_value,
        "best_params": study.best_params,
        "wall": wall,
        "own": own,
        "overhead": (wall - sum(own)) / trials,
        "slots": 1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algorithm", choices=("function", "xgboost"), default="function", help="what a trial trains")
    parser.add_argument("--trials", type=int, default=20, help="trials per search (MaxNumberOfTrainingJobs)")
    parser.add_argument(
        "--work", type=float, default=1.0, help="seconds of busy loop each trial runs before its objective"
    )
    parser.add_argument("--rows", type=int, default=5000, help="XGBoost: training rows (validation: a fifth)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=XGBOOST_ROUNDS,
        help="XGBoost: num_round (1: a trial's fixed cost, little training)",
    )
    parser.add_argument("--runtimes-dir", help="XGBoost: reuse a runtimes directory (default: a temporary one)")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2], help="MaxParallelTrainingJobs to run")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[100, 200, 300], help="RandomSeed / TPESampler seed, a run each"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[str, list[dict]] = {}
    xgboost = args.algorithm == "xgboost"
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-tuning-") as tmp:
        config = Path(tmp) / "runtimes.json"
        config.write_text(
            json.dumps({"images": {IMAGE: {"python": sys.executable, "command": ["python3", "-c", TRAIN_SCRIPT]}}})
        )
        runtimes_dir = Path(args.runtimes_dir or f"{tmp}/runtimes").resolve()
        flags = ("--runtimes-config", str(config), "--runtimes-dir", str(runtimes_dir))
        server = selfmaker_server(Path(tmp) / "data", Path(tmp) / "server.log", *flags)
        with server:
            session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="x", region_name="us-east-1")
            sm = session.client("sagemaker", endpoint_url=server.url)
            s3 = session.client("s3", endpoint_url=server.url)
            s3.create_bucket(Bucket=BUCKET)
            python, data = None, Path(tmp) / "xgb"
            if xgboost:
                data.mkdir()
                for channel, count, seed in (("train", args.rows, 1), ("validation", args.rows // 5, 2)):
                    (data / f"{channel}.csv").write_text(regression_csv(count, seed))
                    s3.upload_file(str(data / f"{channel}.csv"), BUCKET, f"xgb/{channel}/{channel}.csv")
                log("warm-up: a 1-trial XGBoost tuning job (builds the XGBoost runtime; not timed)")
                run_selfmaker(sm, "warm-up", 1, 1, 0.0, 0, xgboost_request("warm-up", 1, 1, 0))
                from selfmaker.engines import runtimes

                python = runtimes.ensure(runtimes.resolve(XGBOOST_IMAGE), runtimes_dir, log) / "python"
            else:
                log("warm-up: a 1-trial tuning job")
                run_selfmaker(sm, "warm-up", 1, 1, 0.0, 0)
            for seed in args.seeds:  # the arms of one seed run back to back, so load drifts weigh on all alike
                for parallel in args.parallel:
                    label = f"SelfMaker, MaxParallelTrainingJobs {parallel}"
                    log(f"seed {seed}: {label}, {args.trials} trials...")
                    name = f"bench-s{seed}-p{parallel}"
                    request = xgboost_request(name, args.trials, parallel, seed, args.rounds) if xgboost else None
                    r = run_selfmaker(sm, name, args.trials, parallel, args.work, seed, request)
                    results.setdefault(label, []).append(r)
                    log(f"  best {r['best']:.4f}, wall {r['wall']:.1f} s, overhead/trial {r['overhead']:.3f} s")
                label = "Optuna directly, in the XGBoost runtime" if xgboost else "Optuna directly, in process"
                log(f"seed {seed}: {label}, {args.trials} trials...")
                r = (
                    run_optuna_xgboost(python, data, args.trials, seed, args.rounds)
                    if python
                    else run_optuna(args.trials, args.work, seed)
                )
                results.setdefault(label, []).append(r)
                log(f"  best {r['best']:.4f}, wall {r['wall']:.1f} s, overhead/trial {r['overhead']:.3f} s")
    # The work a trial must do: the busy loop, or (XGBoost) the direct arm's own xgboost.train time.
    work = statistics.median(v for r in results[label] for v in r["own"]) if xgboost else args.work
    print(f"machine: {machine()}, load average at the end: {os.getloadavg()}")
    rows = []
    for label, runs in results.items():
        rows.append(
            [
                label,
                " / ".join(f"{r['best']:.3f}" for r in runs),
                statistics.median(r["wall"] / args.trials for r in runs),
                statistics.median(v for r in runs for v in r["own"]),
                statistics.median(r["overhead"] for r in runs),
                max(r["overhead"] for r in runs),
                statistics.median(r["wall"] * r["slots"] / args.trials for r in runs) - work,
            ]
        )
    print(
        table(
            [
                "search (TPE)",
                "best objective per seed",
                "wall / trial s",
                "own p50 s",
                "overhead/trial s",
                "max s",
                "slot time / trial - work s",
            ],
            rows,
            title=(
                f"built-in XGBoost, {args.rows} rows, {args.rounds} rounds, validation:rmse minimized; work = the "
                f"direct arm's own xgboost.train p50 ({work:.3f} s)"
                if xgboost
                else f"{args.trials} trials, {args.work} s of busy loop each (objective maximum {BEST})"
            )
            + f", {args.trials} trials, seeds {args.seeds}; medians over the seeds",
        )
    )
    for label, runs in results.items():
        handoffs = [v for r in runs for v in r.get("handoffs") or []]
        if handoffs:
            starts = [v for r in runs for v in r["starts"]]
            print(
                f"{label}: trial end -> next trial created p50 {statistics.median(handoffs) * 1000:.0f} ms, "
                f"max {max(handoffs) * 1000:.0f} ms; created -> training start p50 "
                f"{statistics.median(starts) * 1000:.0f} ms, max {max(starts) * 1000:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
