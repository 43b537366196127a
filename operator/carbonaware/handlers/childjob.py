"""Reading a Job the operator follows: its outcome and its pods."""

from __future__ import annotations

from typing import Any

from carbonaware.handlers.context import OperatorContext


def job_outcome(job: dict[str, Any]) -> tuple[str | None, str]:
    """("Complete" | "Failed" | None, message) from the Job's own conditions."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Complete", condition.get("message") or "The Job completed."
        if condition.get("type") == "Failed":
            reason = condition.get("reason") or "Failed"
            return "Failed", f"{reason}: {condition.get('message') or 'the Job failed.'}"
    return None, ""


async def job_pods(ctx: OperatorContext, job: dict[str, Any]) -> list[dict[str, Any]]:
    meta = job["metadata"]
    return await ctx.kube.list_pods(
        meta["namespace"], f"batch.kubernetes.io/controller-uid={meta['uid']}"
    )
