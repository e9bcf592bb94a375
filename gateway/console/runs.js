// Integration runs: everything one correlation id did — runs with a steps timeline, exceptions, audit.

import { timeline } from "./charts.js";
import { add, errorBox, field, fmtTime, h, hashWith, pill, pretty, table } from "./dom.js";
import { gql } from "./graph.js";

const RUN = `id flow subject status legalEntity correlationId attempts startedAt finishedAt input
  steps { name key status attempts result error startedAt finishedAt }`;
const RUNS = `query ConsoleRuns($filter: IntegrationRunFilter, $first: Int!) {
  integrationRuns(filter: $filter, first: $first) { totalCount edges { node { ${RUN} } } }
}`;
const ONE = `query ConsoleRun($id: ID!) { integrationRun(id: $id) { ${RUN} } }`;
const RELATED = `query ConsoleRelated($correlationId: String!) {
  integrationExceptions(filter: { correlationId: $correlationId }, first: 100) {
    edges { node { id flow reasonCode status step subject legalEntity createdAt runId } }
  }
}`;
const AUDIT = `query ConsoleRunAudit($correlationId: String!) {
  auditTrail(filter: { correlationId: $correlationId }, first: 100) {
    edges { node { at principal roles operation status input } }
  }
}`;

function runCard(run) {
  const duration = run.finishedAt ? `${((new Date(run.finishedAt) - new Date(run.startedAt)) / 1000).toFixed(2)} s` : "running";
  return h(
    "article",
    { class: "card run", "data-test": "run", "data-id": run.id, "data-status": run.status },
    h("div", { class: "title-row" }, h("h2", {}, run.flow), pill(run.status), h("span", { class: "muted" }, run.id)),
    h(
      "dl",
      { class: "details" },
      h("dt", {}, "record"),
      h("dd", {}, run.subject || "–"),
      h("dt", {}, "legal entity"),
      h("dd", {}, run.legalEntity || "–"),
      h("dt", {}, "correlation id"),
      h("dd", {}, run.correlationId ? h("a", { href: hashWith("runs", { correlationId: run.correlationId }) }, run.correlationId) : "–"),
      h("dt", {}, "attempts"),
      h("dd", {}, String(run.attempts)),
      h("dt", {}, "started"),
      h("dd", {}, `${fmtTime(run.startedAt)} · ${duration}`),
    ),
    run.steps.length
      ? timeline(
          run.steps.map((st) => ({ name: st.name, status: st.status, start: st.startedAt, end: st.finishedAt, attempts: st.attempts })),
          { label: `${run.flow} steps` },
        )
      : h("p", { class: "empty" }, "No step recorded."),
    table(
      [
        { label: "step", cell: (st) => st.name },
        { label: "status", cell: (st) => pill(st.status) },
        { label: "attempts", cell: (st) => String(st.attempts) },
        { label: "key", cell: (st) => h("code", { class: "small" }, st.key) },
        { label: "result / error", cell: (st) => h("pre", { class: "json small" }, pretty(st.error || st.result)) },
      ],
      run.steps,
      { rowAttrs: (st) => ({ "data-test": "step", "data-status": st.status }) },
    ),
  );
}

export async function render(root, { params, navigate, viewer }) {
  const corr = h("input", { id: "r-correlation", value: params.correlationId || "", placeholder: "correlation id", size: 34 });
  const flow = h("input", { id: "r-flow", value: params.flow || "", placeholder: "e.g. provision_engagement" });
  const status = h("select", { id: "r-status" }, ["", "RUNNING", "SUCCEEDED", "FAILED"].map((v) => h("option", { value: v, selected: v === (params.status || "") }, v || "any")));
  add(root, 
    h("div", { class: "page-head" }, h("h1", {}, "Integration runs")),
    h(
      "form",
      { class: "filters", onsubmit: (e) => (e.preventDefault(), navigate(hashWith("runs", { correlationId: corr.value.trim(), flow: flow.value.trim(), status: status.value }))) },
      field("Correlation id", corr),
      field("Flow", flow),
      field("Status", status),
      h("button", { type: "submit", id: "find-runs" }, "Find"),
    ),
  );
  try {
    if (params.runId) {
      const run = (await gql(ONE, { id: params.runId })).integrationRun;
      add(root, run ? runCard(run) : errorBox({ code: "NOT_FOUND", message: `no run ${params.runId} that you may see` }));
      return;
    }
    const filter = {};
    if (params.correlationId) filter.correlationId = params.correlationId;
    if (params.flow) filter.flow = params.flow;
    if (params.status) filter.status = params.status;
    const runs = (await gql(RUNS, { filter, first: params.correlationId ? 100 : 30 })).integrationRuns;
    if (!params.correlationId) {
      add(root, 
        h("p", { class: "muted" }, `${runs.totalCount} run${runs.totalCount === 1 ? "" : "s"}, newest first`),
        table(
          [
            { label: "started", cell: (r) => fmtTime(r.startedAt) },
            { label: "flow", cell: (r) => r.flow },
            { label: "status", cell: (r) => pill(r.status) },
            { label: "record", cell: (r) => r.subject || "–" },
            { label: "entity", cell: (r) => r.legalEntity || "–" },
            { label: "steps", cell: (r) => `${r.steps.filter((s) => s.status === "SUCCEEDED").length}/${r.steps.length}` },
            { label: "correlation id", cell: (r) => (r.correlationId ? h("a", { href: hashWith("runs", { correlationId: r.correlationId }) }, r.correlationId) : h("a", { href: hashWith("runs", { runId: r.id }) }, "run")) },
          ],
          runs.edges.map((e) => e.node),
          { empty: "No run matches.", rowAttrs: (r) => ({ "data-test": "run-row" }) },
        ),
      );
      return;
    }
    const related = (await gql(RELATED, { correlationId: params.correlationId })).integrationExceptions.edges.map((e) => e.node);
    // A replay resumes a run under the replay's correlation id: the exception still links the run.
    const found = runs.edges.map((e) => e.node);
    const linked = [...new Set(related.map((x) => x.runId).filter((id) => id && !found.some((r) => r.id === id)))];
    for (const id of linked) {
      const run = (await gql(ONE, { id })).integrationRun;
      if (run) found.push(run);
    }
    add(root, h("h2", {}, `Everything with correlation id ${params.correlationId}`));
    add(root, ...(found.length ? found.map((r) => runCard(r)) : [h("p", { class: "empty" }, "No run carries this correlation id.")]));
    add(root, 
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Exceptions"),
        table(
          [
            { label: "raised", cell: (x) => fmtTime(x.createdAt) },
            { label: "reason", cell: (x) => h("a", { href: hashWith("exception", { id: x.id }) }, x.reasonCode) },
            { label: "status", cell: (x) => pill(x.status) },
            { label: "step", cell: (x) => x.step || "–" },
            { label: "record", cell: (x) => x.subject || "–" },
          ],
          related,
          { empty: "No exception carries this correlation id." },
        ),
      ),
    );
    if (viewer.permissions.includes("read_audit")) {
      const entries = (await gql(AUDIT, { correlationId: params.correlationId })).auditTrail.edges.map((e) => e.node);
      add(root, 
        h(
          "section",
          { class: "card" },
          h("h2", {}, "Audit"),
          table(
            [
              { label: "at", cell: (e) => fmtTime(e.at) },
              { label: "who", cell: (e) => e.principal },
              { label: "operation", cell: (e) => e.operation },
              { label: "status", cell: (e) => pill(e.status) },
              { label: "input", cell: (e) => h("pre", { class: "json small" }, pretty(e.input)) },
            ],
            entries,
            { empty: "No audit entry carries this correlation id.", rowAttrs: (e) => ({ "data-test": "audit-row", "data-operation": e.operation, "data-status": e.status }) },
          ),
        ),
      );
    }
  } catch (error) {
    add(root, errorBox(error));
  }
}
