"""SageMaker SDK v2 experiment tracking end to end: Run, load_run, the metrics it flushes, ExperimentAnalytics."""

from __future__ import annotations

import statistics


def test_run_and_load_run_track_parameters_metrics_and_artifacts(sdk_v2, server, client, unique):
    experiment, run_name = unique("sdk-exp"), unique("run")
    result = sdk_v2.run(
        server,
        f"""
        import json, tempfile
        import boto3
        from sagemaker.session import Session
        from sagemaker.experiments.run import Run, load_run
        from sagemaker.analytics import ExperimentAnalytics

        session = Session(boto3.Session(region_name="us-east-1"))
        with Run(experiment_name="{experiment}", run_name="{run_name}", sagemaker_session=session) as run:
            run.log_parameter("learning_rate", 0.1)
            run.log_parameters({{"optimizer": "adam", "epochs": 3}})
            for step, loss in enumerate([0.9, 0.5, 0.3]):
                run.log_metric("train:loss", loss, step=step)
            run.log_artifact("dataset", "s3://data/train.csv", media_type="text/csv", is_output=False)
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as notes:
                notes.write("trained with adam")
            run.log_file(notes.name, name="notes")

        with load_run(experiment_name="{experiment}", run_name="{run_name}", sagemaker_session=session) as run:
            loaded = [run.experiment_name, run.run_name]
            for step, loss in enumerate([0.2, 0.1], start=3):
                run.log_metric("train:loss", loss, step=step)
            run.log_metric("validation:acc", 0.8)

        # The rows ExperimentAnalytics.dataframe() builds (pandas is not in the SDK's own requirements).
        analytics = ExperimentAnalytics(experiment_name="{experiment}", sagemaker_session=session)
        rows = [analytics._reshape(c) for c in analytics._get_trial_components()]
        print(json.dumps({{"loaded": loaded, "rows": rows}}, default=str))
    """,
    )
    assert result["loaded"] == [experiment, run_name]

    sm = client("sagemaker")
    component = f"{experiment}-{run_name}"
    [summary] = sm.list_trial_components(ExperimentName=experiment)["TrialComponentSummaries"]
    assert summary["TrialComponentName"] == component
    assert [t["TrialName"] for t in sm.list_trials(ExperimentName=experiment)["TrialSummaries"]] == [
        f"Default-Run-Group-{experiment}"
    ]

    tc = sm.describe_trial_component(TrialComponentName=component)
    assert tc["Status"]["PrimaryStatus"] == "Completed" and tc["StartTime"] <= tc["EndTime"]
    assert tc["Parameters"] == {
        "learning_rate": {"NumberValue": 0.1},
        "optimizer": {"StringValue": "adam"},
        "epochs": {"NumberValue": 3},
    }
    assert tc["InputArtifacts"] == {"dataset": {"Value": "s3://data/train.csv", "MediaType": "text/csv"}}
    notes_uri = tc["OutputArtifacts"]["notes"]["Value"]
    assert notes_uri.startswith("s3://selfmaker-sdk-tests/") and tc["OutputArtifacts"]["notes"]["MediaType"]
    bucket, key = notes_uri[len("s3://") :].split("/", 1)
    assert client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == b"trained with adam"

    metrics = {m["MetricName"]: m for m in tc["Metrics"]}
    losses = [0.9, 0.5, 0.3, 0.2, 0.1]  # both `with` blocks flushed everything they logged
    loss = metrics["train:loss"]
    assert (loss["Count"], loss["Min"], loss["Max"], loss["Last"]) == (5, 0.1, 0.9, 0.1)
    assert abs(loss["Avg"] - statistics.mean(losses)) < 1e-9 and abs(loss["StdDev"] - statistics.stdev(losses)) < 1e-9
    assert metrics["validation:acc"]["Count"] == 1

    [row] = result["rows"]
    assert row["TrialComponentName"] == component and row["Experiments"] == [experiment]
    assert row["learning_rate"] == 0.1 and row["train:loss - Count"] == 5 and row["train:loss - Last"] == 0.1
