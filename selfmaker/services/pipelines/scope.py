"""The values an execution's expressions read: parameters, execution variables, the experiment
config, step properties (their job's, model's or package's Describe output), property files and S3 JSON."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ...engines import pipeline_language
from ...objects.access import AccountObjects
from ...server.errors import AWSError

if TYPE_CHECKING:
    from .engine import Pass


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ExecutionScope:
    """``pipeline_language.Scope`` over one reconcile pass of an execution."""

    def __init__(self, p: Pass):
        self.p = p
        self._properties: dict[str, dict] = {}
        self._files: dict[tuple[str, str], object] = {}
        self.current_resource: str | None = None  # Execution.TrainingJobName / ProcessingJobName of the step

    def parameter(self, name: str):
        try:
            return self.p.parameters[name]
        except KeyError:
            raise pipeline_language.EvaluationError(f"Parameters.{name} has no value in this execution") from None

    def execution(self, variable: str):
        p = self.p
        values = {
            "PipelineExecutionId": p.execution_id,
            "PipelineExecutionArn": p.record.arn,
            "PipelineName": p.pipeline_name,
            "PipelineArn": p.record.parent,
            "StartDateTime": _iso(p.record.data["CreationTime"]),
            "CurrentDateTime": _iso(time.time()),
        }
        if variable in ("TrainingJobName", "ProcessingJobName"):
            if self.current_resource is None:
                raise pipeline_language.EvaluationError(f"Execution.{variable} is only defined inside a job step")
            return self.current_resource
        return values[variable]

    def experiment(self, variable: str):
        config = self.p.record.data.get("PipelineExperimentConfig")
        if not config:
            raise pipeline_language.EvaluationError(
                f"PipelineExperimentConfig.{variable}: the pipeline has no PipelineExperimentConfig"
            )
        return config[variable]

    def step_properties(self, step: str) -> dict:
        if step not in self._properties:
            state = self.p.steps.get(step)
            if state is None or state["Status"] != "Succeeded":
                raise pipeline_language.EvaluationError(f"Steps.{step} has not succeeded in this execution")
            try:
                self._properties[step] = self.p.runner(step).properties(self.p, self.p.definition.steps[step], state)
            except AWSError as err:
                raise pipeline_language.EvaluationError(f"Steps.{step}: {err.message}") from None
        return self._properties[step]

    def property_file(self, step: str, name: str):
        if (step, name) not in self._files:
            declared = next(
                (f for f in self.p.definition.steps[step].property_files if f["PropertyFileName"] == name), None
            )
            if declared is None:
                raise pipeline_language.EvaluationError(f"Step '{step}' has no property file '{name}'")
            outputs = self.step_properties(step).get("ProcessingOutputConfig", {}).get("Outputs", [])
            output = next((o for o in outputs if o.get("OutputName") == declared["OutputName"]), None)
            if output is None:
                raise pipeline_language.EvaluationError(
                    f"Step '{step}' has no output '{declared['OutputName']}' for property file '{name}'"
                )
            uri = output["S3Output"]["S3Uri"].rstrip("/") + "/" + declared["FilePath"].lstrip("/")
            self._files[(step, name)] = self.read_json(uri)
        return self._files[(step, name)]

    def read_json(self, s3_uri: str):
        parsed = urlparse(s3_uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise pipeline_language.EvaluationError(f"{s3_uri!r} is not an s3:// URI")
        # As the execution's account: another account's bucket fails the step that reads it.
        objects = AccountObjects.of(self.p.backends, self.p.record.account_id)
        try:
            with objects.open_object(parsed.netloc, parsed.path.lstrip("/")) as reader:
                raw = reader.read()
        except AWSError as err:
            raise pipeline_language.EvaluationError(f"Could not read {s3_uri}: {err.message}") from None
        try:
            return json.loads(raw)
        except ValueError as err:
            raise pipeline_language.EvaluationError(f"{s3_uri} is not JSON: {err}") from None
