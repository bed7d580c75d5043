// Start a renewal discount case from TypeScript with the official Temporal client, print the state
// it waits in, and (with HITL_REVIEWER set) decide it through the `submit_decision` update.
//
//   node dist/start_case.js ../renewal_acme_fy26.json
//
// Environment: TEMPORAL_ADDRESS (localhost:7233), TEMPORAL_NAMESPACE (default), HITL_TASK_QUEUE
// (hitl-cases); to decide: HITL_REVIEWER, HITL_REASON, and HITL_PROOF (`hitl token --as <reviewer>`,
// needed in verified mode).
import { readFileSync } from "node:fs";
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from "@temporalio/client";
import type { Decision } from "./generated/decision.schema";
import type { RenewalDiscountRequest } from "./generated/renewal_discount_exception.schema";

const KIND = "renewal_discount_exception";
const WORKFLOW_TYPE = "RenewalDiscountException";

/** What `case_state` answers (as `hitl show --json` prints it): the fields read here. */
interface CaseView {
  case_id: string;
  state: "gathering" | "waiting" | "awaiting_info" | "recording" | "decided" | "refused";
  ask: string;
  gate: {
    title: string;
    level: number; // 0-based
    level_title: string;
    may_decide: string[];
    next_deadline: string;
    digest: string | null;
  } | null;
  decision: { outcome: string; decided_by: string } | null;
}

/** What `submit_decision` returns when the case accepts the decision. */
interface DecisionReceipt {
  case_id: string;
  accepted: boolean;
  outcome: string;
  reviewer: string;
  level: number;
  message: string;
}

/** The workflow's result, once decided. */
interface CaseResult {
  case_id: string;
  outcome: string;
  decided_by: string;
  decided_via: string;
  reason: string;
  trace_id: number;
}

/** `<kind>:<business key>`, the key lower-cased and anything but a-z 0-9 _ . @ / - made "-":
 * the only ID the case runs under (it refuses any other). */
function caseIdFor(kind: string, businessKey: string): string {
  return `${kind}:${businessKey.toLowerCase().replace(/[^a-z0-9_.@/-]/g, "-")}`;
}

/** The case's state once gathering is over (the query needs a running worker). */
async function settledState(query: () => Promise<CaseView>, seconds: number): Promise<CaseView> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      const view = await query();
      if (view.state !== "gathering" || Date.now() > deadline) return view;
    } catch (err) {
      // asked again: "case is starting; ask again in a moment"; anything else (a refused start) is final
      const starting = err instanceof Error && err.message.includes("case is starting");
      if (!starting || Date.now() > deadline) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error("usage: node dist/start_case.js CASE_FILE (e.g. ../renewal_acme_fy26.json)");
  const request: RenewalDiscountRequest = JSON.parse(readFileSync(file, "utf8"));
  // The case trims identifiers before it builds its ID and summary; do the same.
  const [account, renewal] = [request.account.trim(), request.renewal.trim()];
  const caseId = caseIdFor(KIND, `${account}/${renewal}`);

  const connection = await Connection.connect({ address: process.env.TEMPORAL_ADDRESS ?? "localhost:7233" });
  const client = new Client({ connection, namespace: process.env.TEMPORAL_NAMESPACE ?? "default" });
  try {
    let handle: WorkflowHandle;
    try {
      const started = await client.workflow.start(WORKFLOW_TYPE, {
        taskQueue: process.env.HITL_TASK_QUEUE ?? "hitl-cases",
        workflowId: caseId,
        args: [request], // one argument, plain JSON
        workflowIdConflictPolicy: "USE_EXISTING", // running: this returns the existing case
        workflowIdReusePolicy: "ALLOW_DUPLICATE_FAILED_ONLY", // decided: never a second case
        // The UI's list line. It must be the case's own text, or left out (the case refuses other
        // text); the details are left out: the case's Current Details show the full brief.
        staticSummary: `Finance: ${request.requested_discount_pct}% renewal discount for \`${account}\` (\`${renewal}\`)`,
      });
      console.log(`case ${caseId} (run ${started.firstExecutionRunId})`);
      handle = started;
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      handle = client.workflow.getHandle(caseId); // decided already: that case, never a second one
      console.log(`case ${caseId} (decided already)`);
    }

    const view = await settledState(() => handle.query<CaseView>("case_state"), 60);
    console.log(`state: ${view.state}`);
    console.log(`ask: ${view.ask}`);
    if (view.gate) {
      const { title, level, level_title, may_decide } = view.gate;
      console.log(`gate: ${title}, level ${level + 1} (${level_title}); may decide now: ${may_decide.join(", ")}`);
      console.log(`next deadline: ${view.gate.next_deadline}`);
      console.log(`evidence digest: ${view.gate.digest}`);
    }
    if (view.decision) console.log(`decided: ${view.decision.outcome} by ${view.decision.decided_by}`);

    const reviewer = process.env.HITL_REVIEWER;
    if (!reviewer || view.state !== "waiting" || !view.gate) return;
    const decision: Decision = {
      outcome: "approve",
      reviewer,
      reason: process.env.HITL_REASON ?? "approved from the TypeScript example",
      digest: view.gate.digest, // the evidence this decision was made on
      proof: process.env.HITL_PROOF ?? null,
    };
    try {
      const receipt = await handle.executeUpdate<DecisionReceipt, [Decision]>("submit_decision", { args: [decision] });
      console.log(`accepted: ${receipt.message}`);
    } catch (err) {
      // A refusal (type DecisionRejected) writes nothing: the case waits on.
      if (!(err instanceof WorkflowUpdateFailedError)) throw err;
      console.error(`rejected: ${err.cause?.message ?? err.message}`);
      process.exitCode = 1;
      return;
    }
    const result: CaseResult = await handle.result();
    console.log(`outcome: ${result.outcome} by ${result.decided_by} (trace ${result.trace_id})`);
  } finally {
    await connection.close();
  }
}

main().catch((err: unknown) => {
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
  console.error(`start_case: ${err instanceof Error ? err.message : String(err)}${cause}`);
  process.exitCode = 1;
});
