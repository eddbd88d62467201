"""Where an execution keeps its private state, inside its record (never returned: the keys start with "_").

``STEPS`` maps each step that has started to its state::

    {"Status": StepStatus, "Type": the step's type, "Order": n, "StartTime", "EndTime", "AttemptCount", "FailureReason",
     "DisplayName", "Description", "Metadata": {...as ListPipelineExecutionSteps shows it},
     "Resource": {"Kind": "TrainingJob", "Name", "Arn"}  # the job, model or package behind the step
     "Outcome": "True" | "False"                         # a Condition's
     "Token", "Output": [...]                             # a Callback's token and OutputParameters
     "RetryAt", "FirstFailure"                            # a step waiting to be attempted again
     "CacheSource" / "SelectiveSource": execution ARN    # where a reused result came from}
"""

PARAMETERS = "_Parameters"  # name -> typed value, as cast at start
STEPS = "_Steps"
TOKENS = "_RetryTokens"  # ClientRequestTokens of the RetryPipelineExecution calls already applied
PREPARED = "_Prepared"  # the experiment and trial exist
PAST_ATTEMPTS = "_PastAttempts"  # step name -> attempts made before a RetryPipelineExecution cleared its state

RUNNING = frozenset({"Starting", "Executing", "Stopping"})
