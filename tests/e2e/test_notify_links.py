"""The case's links and failing channels as a user sees them through the `hitl` binary: `hitl show`
prints the case's Temporal Web UI link, and `hitl ops stuck` lists a notification channel that keeps
failing. A real dev server, a real worker and a seeded PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import uuid
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from demo.examples import example
from gates.cases import CaseKind
from gates.messages import Notification
from tests.case_helpers import start_case, wait_until_waiting
from tests.helpers import clean_env, new_worker, run_hitl
from workers.config import Settings
from workers.devstack import free_port

UI = "http://temporal-ui.example:8233"


async def test_hitl_show_prints_the_case_link_that_opens_exactly_this_case(temporal_env, world_pool, cli_env):
    request = example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{uuid.uuid4().hex[:8]}")
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, request, worker.task_queue)
        await wait_until_waiting(handle)
        shown = await run_hitl({**cli_env(worker.task_queue), "HITL_UI_BASE_URL": f"{UI}/"}, "show", handle.id)
        unset = await run_hitl(cli_env(worker.task_queue), "show", handle.id)
        await handle.terminate("test over")

    assert shown.returncode == 0, shown.stderr
    [line] = [line.strip() for line in shown.stdout.splitlines() if line.strip().startswith("web UI:")]
    link = line.removeprefix("web UI:").strip()
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == UI
    namespace = temporal_env.client.namespace
    prefix = f"/namespaces/{namespace}/workflows/"
    assert parts.path.startswith(prefix) and "/" not in parts.path.removeprefix(prefix), "the ID is one path segment"
    assert unquote(parts.path.removeprefix(prefix)) == handle.id
    assert ":" in handle.id and "/" in handle.id and "%3A" in link and "%2F" in link
    assert unset.returncode == 0 and "web UI:" not in unset.stdout, "no UI address known: no link"


@pytest.mark.timeout(120)
async def test_hitl_ops_stuck_lists_an_email_channel_that_keeps_failing(world_pool: asyncpg.Pool, cli_env):
    down = free_port()  # an SMTP server nobody runs
    notifier = NotifyActivities(
        world_pool, Settings(smtp_host="127.0.0.1", smtp_port=down, smtp_from="hitl@example.com", smtp_starttls=False)
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, retry_policy=RetryPolicy(maximum_attempts=5))
    for case in ("acme_enterprise/fy26", "globex/fy27", "initech/fy26"):
        n = Notification(
            notification_key=f"renewal_discount_exception:{case}/{uuid.uuid4()}/r1/reminder/level-0",
            case_id=f"renewal_discount_exception:{case}",
            kind="reminder",
            gate="finance",
            level=0,
            reviewer_group="finance_approvers",
            recipients=["fin_rev_ana"],
            message="Reminder: a renewal discount is waiting.",
        )
        with pytest.raises(ApplicationError):
            await env.run(notifier.notify_reviewers, n)

    shown = await run_hitl(cli_env("unused-notify-stuck"), "ops", "stuck")
    as_json = await run_hitl(cli_env("unused-notify-stuck"), "ops", "stuck", "--json")

    assert shown.returncode == 0, shown.stderr
    section = shown.stdout[shown.stdout.index("notification channels failing") :].splitlines()
    assert section[0] == "notification channels failing (1) in the last 7d"
    [email_row] = [cells for line in section if (cells := [c.strip() for c in line.split("│")[1:-1]]) and cells[0] == "email"]
    assert email_row[1] == "3", "three notifications not delivered on it"
    assert email_row[3] == f"cannot reach SMTP server 127.0.0.1:{down}: Connection refused"
    [failing] = json.loads(as_json.stdout)["failing_channels"]
    assert (failing["channel"], failing["notifications"]) == ("email", 3)
    assert failing["last_error"].startswith(f"cannot reach SMTP server 127.0.0.1:{down}")


@pytest.mark.parametrize(
    "settings, variable, says",
    [
        ({"HITL_SMTP_HOST": "mail.example.com"}, "HITL_SMTP_FROM", "HITL_SMTP_HOST needs HITL_SMTP_FROM"),
        ({"HITL_SMTP_HOST": "mail.example.com", "HITL_SMTP_FROM": "hitl at example"}, "HITL_SMTP_FROM", "not an email address"),
        ({"HITL_UI_BASE_URL": "localhost:8233"}, "HITL_UI_BASE_URL", "is not an http(s) URL"),
        (
            {
                "HITL_SMTP_HOST": "mail.example.com",
                "HITL_SMTP_FROM": "hitl@example.com",
                "HITL_SMTP_USER": "hitl",
                "HITL_SMTP_PASSWORD": "s3cret-never-shown",
                "HITL_SMTP_STARTTLS": "false",
            },
            "HITL_SMTP_STARTTLS",
            "would send the SMTP password in clear",
        ),
    ],
)
async def test_bad_notification_settings_are_one_line_naming_the_variable(settings, variable, says):
    env = {**clean_env(HITL_DATABASE_URL=f"postgresql://u@127.0.0.1:{free_port()}/x"), **settings}

    result = await run_hitl(env, "migrate")

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("hitl: invalid configuration:") and variable in line and says in line, line
    assert "s3cret-never-shown" not in result.stderr + result.stdout
