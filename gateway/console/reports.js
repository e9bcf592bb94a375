// Reconciliation report, mapping viewer and audit trail.

import { comparison, hbars } from "./charts.js";
import { add, errorBox, field, fmtNumber, fmtTime, h, hashWith, pill, pretty, table } from "./dom.js";
import { gql } from "./graph.js";

const RECONCILE = `query ConsoleReconciliation($filter: ReconciliationFilter!) {
  reconciliation(filter: $filter) {
    legalEntities from to asOf clean
    counts { category count }
    checks { check source target sourceRecords targetRecords sourceTotal targetTotal unit mismatches notYetSynced untracked }
    mismatches { category check canonicalId legalEntity crmId erpId psaId expected actual currency reason detail }
  }
}`;
const MAPPING = `query ConsoleMapping {
  mapping { version description fingerprint tables { name columns rows } gaps { table key exceptions exceptionIds } }
}`;
const AUDIT = `query ConsoleAudit($filter: AuditFilter, $first: Int!, $after: String) {
  auditTrail(filter: $filter, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { at principal roles operation status correlationId input result } }
  }
}`;

const MAX_ROWS = 100;

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

export async function renderReconciliation(root, { params, navigate }) {
  const today = new Date();
  const first = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1));
  const from = h("input", { id: "rc-from", type: "date", value: params.from || isoDay(first) });
  const to = h("input", { id: "rc-to", type: "date", value: params.to || isoDay(today) });
  const entity = h("input", { id: "rc-entity", value: params.legalEntity || "", placeholder: "all yours", size: 8 });
  add(root, 
    h("div", { class: "page-head" }, h("h1", {}, "Reconciliation")),
    h("p", { class: "muted" }, "CRM vs PSA vs ERP for a legal entity and period: deals won vs provisioned, approved vs posted hours, invoiced vs CRM billed-to-date, receivables vs CRM open receivables."),
    h(
      "form",
      { class: "filters", onsubmit: (e) => (e.preventDefault(), navigate(hashWith("reconciliation", { from: from.value, to: to.value, legalEntity: entity.value.trim(), run: "1" }))) },
      field("From", from),
      field("To", to),
      field("Legal entity", entity),
      h("button", { type: "submit", id: "reconcile" }, "Reconcile"),
    ),
  );
  if (!params.run) {
    add(root, h("p", { class: "empty" }, "Choose a period and press Reconcile."));
    return;
  }
  const filter = { from: from.value, to: to.value };
  if (params.legalEntity) filter.legalEntity = params.legalEntity;
  let report;
  try {
    report = (await gql(RECONCILE, { filter })).reconciliation;
  } catch (error) {
    add(root, errorBox(error));
    return;
  }
  const category = params.category || "";
  const shown = category ? report.mismatches.filter((m) => m.category === category) : report.mismatches;
  add(root, 
    h(
      "div",
      { class: "summary" },
      h("div", { class: `stat ${report.clean ? "stat-ok" : "stat-bad"}` }, h("span", { class: "stat-value", "data-test": "reconciliation-state" }, report.clean ? "clean" : `${report.mismatches.length} mismatches`), h("span", {}, `${report.legalEntities.join(", ") || "all entities"} · ${report.from} → ${report.to}`)),
      h("div", { class: "stat" }, h("span", { class: "stat-value small" }, report.asOf), h("span", {}, "figures as of")),
    ),
    h(
      "div",
      { class: "two" },
      h("section", { class: "card" }, h("h2", {}, "Totals by check"), h("p", { class: "legend" }, h("span", { class: "key key-source" }), "owner's side ", h("span", { class: "key key-target" }), "the other system"), comparison(report.checks)),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Mismatches by category"),
        report.counts.length ? hbars(report.counts.map((c) => ({ label: c.category, value: c.count, cls: "bar-bad" })), { label: "mismatches by category" }) : h("p", { class: "empty" }, "None: the systems agree."),
        h("ul", { class: "links" }, report.counts.map((c) => h("li", {}, h("a", { href: hashWith("reconciliation", { ...params, category: c.category }) }, `${c.category} (${c.count})`)))),
      ),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Checks"),
      table(
        [
          { label: "check", cell: (c) => c.check },
          { label: "source → target", cell: (c) => `${c.source} → ${c.target}` },
          { label: "records", cell: (c) => `${c.sourceRecords} / ${c.targetRecords}` },
          { label: "totals", cell: (c) => `${fmtNumber(c.sourceTotal)} / ${fmtNumber(c.targetTotal)} ${c.unit}`, cls: "num" },
          { label: "mismatches", cell: (c) => (c.mismatches ? pill("MISMATCH") : pill("OK")), cls: "num" },
          { label: "not yet synced", cell: (c) => String(c.notYetSynced), cls: "num" },
          { label: "history", cell: (c) => String(c.untracked), cls: "num" },
        ],
        report.checks,
      ),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, category ? `Mismatches: ${category}` : "Mismatches", category ? h("a", { class: "small-link", href: hashWith("reconciliation", { ...params, category: "" }) }, " show all") : null),
      table(
        [
          { label: "category", cell: (m) => h("code", {}, m.category) },
          { label: "check", cell: (m) => m.check },
          { label: "entity", cell: (m) => m.legalEntity || "–" },
          { label: "CRM / ERP / PSA", cell: (m) => [m.crmId, m.erpId, m.psaId].map((v) => v || "–").join(" / ") },
          { label: "expected", cell: (m) => fmtNumber(m.expected), cls: "num" },
          { label: "actual", cell: (m) => fmtNumber(m.actual), cls: "num" },
          { label: "reason", cell: (m) => m.reason || "–" },
          { label: "detail", cell: (m) => m.detail },
        ],
        shown.slice(0, MAX_ROWS),
        { empty: "No mismatch.", rowAttrs: () => ({ "data-test": "mismatch" }) },
      ),
      shown.length > MAX_ROWS
        ? h("p", { class: "muted" }, `Showing ${MAX_ROWS} of ${shown.length}. Pick a category above, or run `, h("code", {}, "p2c reconcile --format csv"), " for every row.")
        : null,
    ),
  );
}

export async function renderMapping(root, { params, navigate }) {
  add(root, h("div", { class: "page-head" }, h("h1", {}, "Mapping")));
  let view;
  try {
    view = (await gql(MAPPING)).mapping;
  } catch (error) {
    add(root, errorBox(error));
    return;
  }
  const names = view.tables.map((t) => t.name);
  const current = names.includes(params.table) ? params.table : names[0];
  const tableData = view.tables.find((t) => t.name === current);
  const search = h("input", { id: "m-search", type: "search", placeholder: "filter rows", value: params.q || "" });
  const body = h("div", { id: "mapping-table" });
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const rows = tableData ? tableData.rows.filter((r) => !q || r.some((c) => c.toLowerCase().includes(q))) : [];
    body.replaceChildren(
      tableData
        ? table(
            tableData.columns.map((c, i) => ({ label: c, cell: (r) => r[i], cls: i === 0 ? "key-cell" : null })),
            rows,
            { empty: "No row matches.", rowAttrs: () => ({ "data-test": "mapping-row" }) },
          )
        : h("p", { class: "empty" }, "The mapping has no table."),
    );
  };
  search.addEventListener("input", draw);
  add(root, 
    h(
      "div",
      { class: "card" },
      h("dl", { class: "details" }, h("dt", {}, "version"), h("dd", { "data-test": "mapping-version" }, view.version), h("dt", {}, "fingerprint"), h("dd", {}, h("code", { class: "small" }, view.fingerprint)), view.description ? [h("dt", {}, "description"), h("dd", {}, view.description)] : null),
    ),
    view.gaps.length
      ? h(
          "section",
          { class: "card warn", "data-test": "mapping-gaps" },
          h("h2", {}, "Gaps open exceptions name"),
          h("p", { class: "muted" }, "Add these entries, load the new mapping, then replay the exceptions."),
          table(
            [
              { label: "table", cell: (g) => g.table },
              { label: "key", cell: (g) => h("code", {}, g.key) },
              { label: "exceptions", cell: (g) => g.exceptionIds.map((id, i) => [i ? " " : "", h("a", { href: hashWith("exception", { id }) }, `#${i + 1}`)]) },
            ],
            view.gaps,
          ),
        )
      : null,
    h(
      "div",
      { class: "tabs", role: "tablist" },
      names.map((n) => h("a", { role: "tab", href: hashWith("mapping", { table: n }), class: n === current ? "tab active" : "tab", "aria-selected": n === current ? "true" : "false" }, n.replaceAll("_", " "))),
    ),
    h("div", { class: "card" }, h("div", { class: "tools" }, search, h("span", { class: "muted" }, tableData ? ` ${tableData.rows.length} entries` : "")), body),
  );
  draw();
}

export async function renderAudit(root, { params, navigate }) {
  const operation = h("input", { id: "a-operation", value: params.operation || "", placeholder: "e.g. replayException" });
  const principal = h("input", { id: "a-principal", value: params.principal || "", placeholder: "subject" });
  const corr = h("input", { id: "a-correlation", value: params.correlationId || "", placeholder: "correlation id" });
  add(root, 
    h("div", { class: "page-head" }, h("h1", {}, "Audit trail")),
    h(
      "form",
      { class: "filters", onsubmit: (e) => (e.preventDefault(), navigate(hashWith("audit", { operation: operation.value.trim(), principal: principal.value.trim(), correlationId: corr.value.trim() }))) },
      field("Operation", operation),
      field("Who", principal),
      field("Correlation id", corr),
      h("button", { type: "submit" }, "Filter"),
    ),
  );
  const filter = {};
  for (const k of ["operation", "principal", "correlationId"]) if (params[k]) filter[k] = params[k];
  let page;
  try {
    page = (await gql(AUDIT, { filter, first: 50, after: params.after || null })).auditTrail;
  } catch (error) {
    add(root, errorBox(error));
    return;
  }
  add(root, 
    table(
      [
        { label: "at", cell: (e) => fmtTime(e.at) },
        { label: "who", cell: (e) => e.principal },
        { label: "roles", cell: (e) => e.roles.join(", ") },
        { label: "operation", cell: (e) => e.operation },
        { label: "status", cell: (e) => pill(e.status) },
        { label: "correlation id", cell: (e) => (e.correlationId ? h("a", { href: hashWith("runs", { correlationId: e.correlationId }) }, e.correlationId) : "–") },
        { label: "input", cell: (e) => h("pre", { class: "json small" }, pretty(e.input)) },
      ],
      page.edges.map((e) => e.node),
      { empty: "No entry matches.", rowAttrs: (e) => ({ "data-test": "audit-row", "data-operation": e.operation, "data-status": e.status }) },
    ),
    page.pageInfo.hasNextPage ? h("a", { class: "more", href: hashWith("audit", { ...params, after: page.pageInfo.endCursor }) }, "Older →") : null,
  );
}
