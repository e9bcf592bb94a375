// Exception queue: filter, inspect payload and upstream error, edit-and-replay or dismiss with a reason.
// The buttons show only for callers whose token carries the permission; the server checks it again and
// audits every attempt, so a refusal is shown with the server's code.

import { add, errorBox, field, fmtSeconds, fmtTime, h, hashWith, pill, pretty, table } from "./dom.js";
import { gql, newId } from "./graph.js";

const FIELDS = `id flow reasonCode status step subject legalEntity correlationId runId occurrences ageSeconds
  createdAt updatedAt resolvedAt resolutionNote dismissedBy`;
const LIST = `query ConsoleExceptions($filter: IntegrationExceptionFilter, $first: Int!, $after: String) {
  integrationExceptions(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { ${FIELDS} } }
  }
}`;
const ONE = `query ConsoleException($id: ID!) {
  integrationException(id: $id) { ${FIELDS} payload upstreamError }
}`;
const REPLAY = `mutation ConsoleReplay($id: ID!, $key: String!, $payload: JSON) {
  replayException(id: $id, idempotencyKey: $key, payload: $payload) { exception { id status resolutionNote } result }
}`;
const DISMISS = `mutation ConsoleDismiss($id: ID!, $reason: String!, $key: String!) {
  dismissException(id: $id, reason: $reason, idempotencyKey: $key) { id status resolutionNote dismissedBy }
}`;
const AUDIT = `query ConsoleActionAudit($filter: AuditFilter) {
  auditTrail(filter: $filter, first: 50) { edges { node { at principal roles operation status correlationId input result } } }
}`;
const STATUSES = ["", "OPEN", "REPLAYING", "RESOLVED", "DISMISSED"];
const FLOWS = ["", "provision_engagement", "post_time", "post_expense", "release_milestone", "billing_writeback"];
const PAGE = 50;

function select(id, options, value) {
  return h("select", { id }, options.map((o) => h("option", { value: o, selected: o === value }, o || "any")));
}

export async function renderList(root, { params, navigate }) {
  const status = select("f-status", STATUSES, params.status ?? "OPEN");
  const flow = select("f-flow", FLOWS.includes(params.flow || "") ? FLOWS : [...FLOWS, params.flow], params.flow || "");
  const reason = h("input", { id: "f-reason", value: params.reasonCode || "", placeholder: "e.g. PERIOD_CLOSED" });
  const entity = h("input", { id: "f-entity", value: params.legalEntity || "", placeholder: "e.g. US01", size: 6 });
  const subject = h("input", { id: "f-subject", value: params.subject || "", placeholder: "record id" });
  const apply = () =>
    navigate(
      hashWith("exceptions", {
        status: status.value || "any",
        flow: flow.value,
        reasonCode: reason.value.trim(),
        legalEntity: entity.value.trim(),
        subject: subject.value.trim(),
      }),
    );
  const form = h(
    "form",
    { class: "filters", onsubmit: (e) => (e.preventDefault(), apply()) },
    field("Status", status),
    field("Flow", flow),
    field("Reason", reason),
    field("Legal entity", entity),
    field("Record", subject),
    h("button", { type: "submit", id: "apply-filter" }, "Filter"),
  );
  add(root, h("div", { class: "page-head" }, h("h1", {}, "Exception queue")), form);

  const filter = {};
  const wanted = params.status ?? "OPEN";
  if (wanted && wanted !== "any") filter.status = [wanted];
  if (params.flow) filter.flow = params.flow;
  if (params.reasonCode) filter.reasonCode = params.reasonCode;
  if (params.legalEntity) filter.legalEntity = params.legalEntity;
  if (params.subject) filter.subject = params.subject;
  let data;
  try {
    data = await gql(LIST, { filter, first: PAGE, after: params.after || null });
  } catch (error) {
    add(root, errorBox(error));
    return;
  }
  const list = data.integrationExceptions;
  const rows = list.edges.map((e) => e.node);
  add(root, 
    h("p", { class: "muted", "data-test": "exception-count" }, `${list.totalCount} exception${list.totalCount === 1 ? "" : "s"}`),
    table(
      [
        { label: "raised", cell: (x) => fmtTime(x.createdAt) },
        { label: "flow", cell: (x) => x.flow },
        { label: "reason", cell: (x) => h("code", {}, x.reasonCode) },
        { label: "status", cell: (x) => pill(x.status) },
        { label: "step", cell: (x) => x.step || "–" },
        { label: "record", cell: (x) => x.subject || "–" },
        { label: "entity", cell: (x) => x.legalEntity || "–" },
        { label: "age", cell: (x) => fmtSeconds(x.ageSeconds) },
        { label: "×", cell: (x) => String(x.occurrences) },
        { label: "", cell: (x) => h("a", { href: hashWith("exception", { id: x.id }), "data-test": "open-exception" }, "inspect") },
      ],
      rows,
      {
        empty: "No exception matches the filter.",
        rowAttrs: (x) => ({ "data-test": "exception-row", "data-id": x.id, "data-status": x.status, class: "clickable", onclick: (e) => e.target.tagName !== "A" && navigate(hashWith("exception", { id: x.id })) }),
      },
    ),
    list.pageInfo.hasNextPage ? h("a", { class: "more", href: hashWith("exceptions", { ...params, after: list.pageInfo.endCursor }) }, "Next page →") : null,
  );
}

function detailList(x) {
  const pairs = [
    ["flow", x.flow],
    ["step", x.step],
    ["record", x.subject],
    ["legal entity", x.legalEntity],
    ["correlation id", x.correlationId ? h("a", { href: hashWith("runs", { correlationId: x.correlationId }) }, x.correlationId) : null],
    ["run", x.runId ? h("a", { href: hashWith("runs", { runId: x.runId }) }, x.runId) : null],
    ["occurrences", String(x.occurrences)],
    ["raised", `${fmtTime(x.createdAt)} (${fmtSeconds(x.ageSeconds)} ago)`],
    ["updated", fmtTime(x.updatedAt)],
    ["closed", x.resolvedAt ? fmtTime(x.resolvedAt) : null],
    ["note", x.resolutionNote],
    ["dismissed by", x.dismissedBy],
  ];
  return h("dl", { class: "details" }, pairs.filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function auditTable(entries) {
  return table(
    [
      { label: "at", cell: (e) => fmtTime(e.at) },
      { label: "who", cell: (e) => e.principal },
      { label: "roles", cell: (e) => e.roles.join(", ") },
      { label: "operation", cell: (e) => e.operation },
      { label: "status", cell: (e) => pill(e.status) },
      { label: "correlation id", cell: (e) => (e.correlationId ? h("a", { href: hashWith("runs", { correlationId: e.correlationId }) }, e.correlationId) : "–") },
    ],
    entries,
    { empty: "No audit entry yet.", rowAttrs: (e) => ({ "data-test": "audit-row", "data-operation": e.operation, "data-status": e.status }) },
  );
}

function aboutException(entry, id) {
  const input = entry.input || {};
  return input.exceptionId === id || (input.input && input.input.exceptionId === id);
}

async function history(id, correlationId) {
  const [replays, dismissals, own] = await Promise.all([
    gql(AUDIT, { filter: { operation: "replayException" } }),
    gql(AUDIT, { filter: { operation: "dismissException" } }),
    correlationId ? gql(AUDIT, { filter: { correlationId } }) : Promise.resolve({ auditTrail: { edges: [] } }),
  ]);
  const nodes = (r) => r.auditTrail.edges.map((e) => e.node);
  const entries = [...[...nodes(replays), ...nodes(dismissals)].filter((e) => aboutException(e, id)), ...nodes(own)];
  const seen = new Set();
  return entries
    .filter((e) => {
      const key = `${e.at}|${e.operation}|${e.status}|${e.principal}`;
      return seen.has(key) ? false : seen.add(key);
    })
    .sort((a, b) => (a.at < b.at ? 1 : -1));
}

export async function renderDetail(root, { params, viewer, navigate, flash }) {
  const id = params.id;
  add(root, h("div", { class: "page-head" }, h("h1", {}, "Exception"), h("a", { href: hashWith("exceptions", {}), class: "back" }, "← queue")));
  let x;
  try {
    x = (await gql(ONE, { id })).integrationException;
  } catch (error) {
    add(root, errorBox(error));
    return;
  }
  if (!x) {
    add(root, errorBox({ code: "NOT_FOUND", message: `no exception ${id} that you may see` }));
    return;
  }
  const active = x.status === "OPEN";
  const mayReplay = viewer.permissions.includes("replay_exception");
  const mayDismiss = viewer.permissions.includes("dismiss_exception");
  const payload = h("textarea", { id: "payload", rows: 14, spellcheck: "false", readonly: !(active && mayReplay) });
  payload.value = pretty(x.payload);
  const outcome = h("div", { id: "outcome", "aria-live": "polite" });
  const actions = h("div", { class: "actions" });
  const reason = h("input", { id: "dismiss-reason", placeholder: "why it needs no replay", size: 40 });

  async function act(kind) {
    const correlationId = newId("console");
    const key = newId(kind);
    outcome.replaceChildren(h("p", { class: "muted" }, "Working…"));
    for (const b of actions.querySelectorAll("button")) b.disabled = true;
    try {
      let status;
      if (kind === "dismiss") {
        const done = await gql(DISMISS, { id, reason: reason.value, key }, { correlationId });
        status = done.dismissException.status;
      } else {
        let edited = null;
        if (kind === "edit") {
          try {
            edited = JSON.parse(payload.value);
          } catch (exc) {
            throw { code: "INVALID_JSON", message: `the payload is not JSON: ${exc.message}` };
          }
        }
        const done = await gql(REPLAY, { id, key, payload: edited }, { correlationId });
        status = done.replayException.exception.status;
      }
      const entries = (await gql(AUDIT, { filter: { correlationId } })).auditTrail.edges.map((e) => e.node);
      outcome.replaceChildren(
        h("p", { class: "done", "data-test": "outcome", "data-status": status }, `${kind === "dismiss" ? "Dismissed" : "Replayed"}: the exception is now `, pill(status)),
        h("h3", {}, "Audit entries of this action"),
        auditTable(entries),
      );
      setTimeout(() => navigate(location.hash, true, outcome), 0);
    } catch (error) {
      outcome.replaceChildren(errorBox(error));
      for (const b of actions.querySelectorAll("button")) b.disabled = false;
    }
  }

  if (active && mayReplay) {
    actions.append(
      h("button", { type: "button", id: "replay", onclick: () => act("replay") }, "Replay"),
      h("button", { type: "button", id: "edit-replay", class: "secondary", onclick: () => act("edit") }, "Save payload & replay"),
    );
  }
  if (active && mayDismiss) {
    actions.append(h("span", { class: "dismiss" }, field("Reason", reason), h("button", { type: "button", id: "dismiss", class: "danger", onclick: () => act("dismiss") }, "Dismiss")));
  }
  const notice =
    active && !(mayReplay || mayDismiss)
      ? h("p", { class: "notice", "data-test": "no-permission" }, `Your roles (${viewer.roles.join(", ") || "none"}) may not replay or dismiss exceptions; that takes finance or integration_admin.`)
      : null;

  add(root, 
    h(
      "div",
      { class: "card" },
      h("div", { class: "title-row" }, h("h2", {}, h("code", {}, x.reasonCode)), pill(x.status), h("span", { class: "muted", "data-test": "exception-id" }, x.id)),
      detailList(x),
    ),
    h(
      "div",
      { class: "two" },
      h("section", { class: "card" }, h("h2", {}, "Upstream error"), h("pre", { class: "json", id: "upstream-error" }, pretty(x.upstreamError))),
      h("section", { class: "card" }, h("h2", {}, active && mayReplay ? "Payload (edit, then “Save payload & replay”)" : "Payload"), payload),
    ),
    h("section", { class: "card" }, h("h2", {}, "Act"), notice, active ? actions : h("p", { class: "muted" }, `Nothing to do: the exception is ${x.status}.`), flash || outcome),
  );
  if (viewer.permissions.includes("read_audit")) {
    const holder = h("section", { class: "card" }, h("h2", {}, "History"), h("p", { class: "muted" }, "Loading…"));
    add(root, holder);
    try {
      holder.replaceChildren(h("h2", {}, "History"), auditTable(await history(id, x.correlationId)));
    } catch (error) {
      holder.replaceChildren(h("h2", {}, "History"), errorBox(error));
    }
  }
}
