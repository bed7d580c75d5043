"""What the starter put in a case's start event for the UI to show: its static summary and details.

Workflow code cannot read its own start's user metadata, so this activity asks Temporal. The case
workflow compares the text with the case's own (gates/presentation.py) and refuses a start that
carries anything else: the Web UI shows it on the case page as the case's words.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from gates.messages import StartMetadata, StartMetadataRequest


class StartMetadataActivities:
    def __init__(self, client: Client):
        self._client = client

    @activity.defn(name="read_start_metadata")
    async def read_start_metadata(self, request: StartMetadataRequest) -> StartMetadata:
        """Read-only; the answer is kept in history, so replay never asks again."""
        description = await self._client.get_workflow_handle(request.workflow_id, run_id=request.run_id).describe()
        return StartMetadata(
            static_summary=await description.static_summary(), static_details=await description.static_details()
        )
