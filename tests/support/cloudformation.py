"""CloudFormation tests: waiting for a stack to settle, and reading its outputs."""

from __future__ import annotations

from support.waiting import wait_for

DONE = ("COMPLETE", "FAILED")


def wait_stack(cfn, name: str, timeout: float = 120) -> dict:
    """The stack once it has settled (any *_COMPLETE or *_FAILED status, nothing in progress)."""
    return wait_for(
        lambda: cfn.describe_stacks(StackName=name)["Stacks"][0],
        lambda s: s["StackStatus"].endswith(DONE) and "IN_PROGRESS" not in s["StackStatus"],
        timeout=timeout,
        what=f"stack {name} to finish",
    )


def outputs(stack: dict) -> dict:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
