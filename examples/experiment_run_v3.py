"""Track an experiment with `Run` (SageMaker SDK v3): parameters, a metric per epoch, an input and a file.

    eval "$(selfmaker env --write-sdk-config)"
    python examples/experiment_run_v3.py

The v2 version is experiment_run.py: only the imports differ.

The "training" is a small linear regression fitted by gradient descent in plain Python, on generated data
(y = 3x + 1 with noise), so the loss curve is real. Compare runs in the web console (Experiments).
"""

import random
import tempfile
import time

import boto3
from sagemaker.core.experiments.run import Run
from sagemaker.core.helper.session_helper import Session

EXPERIMENT = "example-linear-regression"
session = Session()
rng = random.Random(7)
data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(200))]


def fit(learning_rate: float, epochs: int, run: Run) -> tuple[float, float]:
    w = b = 0.0
    for epoch in range(epochs):
        grad_w = sum(2 * (w * x + b - y) * x for x, y in data) / len(data)
        grad_b = sum(2 * (w * x + b - y) for x, y in data) / len(data)
        w, b = w - learning_rate * grad_w, b - learning_rate * grad_b
        loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
        run.log_metric("train:loss", loss, step=epoch)
    return w, b


run_name = f"v3-lr-0-3-{int(time.time())}"
with Run(experiment_name=EXPERIMENT, run_name=run_name, sagemaker_session=session) as run:
    run.log_parameters({"learning_rate": 0.3, "epochs": 40, "optimizer": "gradient descent"})
    run.log_artifact("dataset", "generated: y = 3x + 1 + noise", is_output=False)
    w, b = fit(0.3, 40, run)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as notes:
        notes.write(f"w={w:.4f} b={b:.4f}\n")
    run.log_file(notes.name, name="coefficients")  # uploaded to the default bucket
print(f"fitted w={w:.3f} b={b:.3f} (the data was made with w=3, b=1)")

# What the run recorded, read back through the plain API (a run is a trial component).
component = boto3.client("sagemaker").describe_trial_component(TrialComponentName=f"{EXPERIMENT}-{run_name}")
loss = next(m for m in component["Metrics"] if m["MetricName"] == "train:loss")
print("run", component["TrialComponentName"], component["Status"]["PrimaryStatus"])
print("  parameters:", {name: next(iter(value.values())) for name, value in component["Parameters"].items()})
print(f"  train:loss: {loss['Count']} values, first {loss['Max']:.3f}, last {loss['Last']:.5f}")
if abs(w - 3) > 0.2 or abs(b - 1) > 0.2 or loss["Count"] != 40:
    raise SystemExit("the run did not record what was logged")
