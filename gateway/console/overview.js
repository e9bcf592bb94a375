// Overview: flow health, queue depth, throughput sparklines, SLA figures, open exceptions by reason.

import { bullet, hbars, ring, sparkline } from "./charts.js";
import { add, errorBox, fmtSeconds, fmtTime, h, hashWith, pill, table } from "./dom.js";
import { gql } from "./graph.js";

const QUERY = `query ConsoleOverview($hours: Int!, $buckets: Int!) {
  flowHealth(hours: $hours, buckets: $buckets) {
    asOf windowHours bucketMinutes
    flows { flow queueKind status reasons runs succeeded failed running successRate p50DurationMs p95DurationMs
            queueDepth oldestWaitingSeconds openExceptions oldestOpenExceptionSeconds throughputUnit throughput failures }
    sla { name description targetSeconds samples p50Seconds p95Seconds withinTarget met }
  }
  syncStatus {
    exceptionsByReason { reasonCode count oldestAgeSeconds }
    pollers { poller value updatedAt }
  }
}`;

const REFRESH_MS = 30_000;
let refresh = null;

const WINDOWS = [
  ["6", "6 h"],
  ["24", "24 h"],
  ["168", "7 days"],
];

function flowCard(f) {
  const total = f.throughput.reduce((a, b) => a + b, 0);
  return h(
    "article",
    { class: `card flow flow-${f.status.toLowerCase()}`, "data-test": "flow-card", "data-flow": f.flow },
    h("header", {}, h("h3", {}, f.flow), pill(f.status)),
    f.reasons.length ? h("ul", { class: "reasons" }, f.reasons.map((r) => h("li", {}, r))) : null,
    h(
      "div",
      { class: "flow-body" },
      ring(f.successRate, { label: `${f.flow} success rate` }),
      h(
        "dl",
        { class: "figures" },
        h("dt", {}, "runs"),
        h("dd", {}, `${f.succeeded} ok · ${f.failed} failed${f.running ? ` · ${f.running} running` : ""}`),
        h("dt", {}, "queue"),
        h("dd", { "data-test": "queue-depth" }, f.queueDepth === null ? "no queue" : `${f.queueDepth} waiting`),
        h("dt", {}, "oldest wait"),
        h("dd", {}, fmtSeconds(f.oldestWaitingSeconds)),
        h("dt", {}, "open exceptions"),
        h(
          "dd",
          {},
          f.openExceptions
            ? h("a", { href: hashWith("exceptions", { flow: f.flow, status: "OPEN" }) }, `${f.openExceptions} (oldest ${fmtSeconds(f.oldestOpenExceptionSeconds)})`)
            : "0",
        ),
      ),
    ),
    h(
      "figure",
      { class: "spark" },
      sparkline(f.throughput, { failures: f.failures, label: `${f.flow} ${f.throughputUnit} completed` }),
      h("figcaption", {}, `${total} ${total === 1 ? f.throughputUnit.replace(/s$/, "") : f.throughputUnit} completed`, f.p50DurationMs !== null ? ` · p50 run ${f.p50DurationMs} ms` : ""),
    ),
  );
}

function slaRow(figure) {
  return h(
    "div",
    { class: "sla-row", "data-test": "sla", "data-name": figure.name },
    h("div", { class: "sla-name" }, h("strong", {}, figure.name.replaceAll("_", " ")), h("div", { class: "muted" }, figure.description)),
    bullet(figure),
    h(
      "div",
      { class: "sla-figures" },
      figure.samples
        ? [
            `p50 ${fmtSeconds(figure.p50Seconds)} · p95 ${fmtSeconds(figure.p95Seconds)} · target ${fmtSeconds(figure.targetSeconds)}`,
            h("br"),
            `${Math.round((figure.withinTarget || 0) * 100)}% of ${figure.samples} within target `,
            pill(figure.met ? "MET" : "MISSED"),
          ]
        : h("span", { class: "muted" }, `no samples in the window (target ${fmtSeconds(figure.targetSeconds)})`),
    ),
  );
}

export async function render(root, { params, navigate }) {
  clearTimeout(refresh);
  // Re-read every 30 s while this very view is on screen (a newer render or another page detaches it).
  const again = () => (root.isConnected ? navigate(location.hash, true) : null);
  refresh = setTimeout(again, REFRESH_MS);
  const hours = WINDOWS.some(([v]) => v === params.hours) ? params.hours : "24";
  const select = h(
    "select",
    { id: "window", "aria-label": "window", onchange: (e) => navigate(hashWith("overview", { hours: e.target.value })) },
    WINDOWS.map(([v, label]) => h("option", { value: v, selected: v === hours }, label)),
  );
  add(root, 
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("div", { class: "tools" }, select, h("button", { type: "button", class: "quiet", onclick: () => navigate(location.hash, true) }, "Refresh"))),
  );
  let data;
  try {
    data = await gql(QUERY, { hours: Number(hours), buckets: 24 });
  } catch (error) {
    add(root, errorBox(error));
    return;
  }
  const report = data.flowHealth;
  const sync = data.syncStatus;
  const open = report.flows.reduce((a, f) => a + f.openExceptions, 0);
  const depth = report.flows.reduce((a, f) => a + (f.queueDepth || 0), 0);
  const red = report.flows.filter((f) => f.status === "RED").length;
  const amber = report.flows.filter((f) => f.status === "AMBER").length;
  add(root, 
    h(
      "div",
      { class: "summary" },
      h("div", { class: "stat" }, h("span", { class: "stat-value", "data-test": "open-exceptions" }, String(open)), h("span", {}, "open exceptions")),
      h("div", { class: "stat" }, h("span", { class: "stat-value" }, String(depth)), h("span", {}, "items queued")),
      h("div", { class: `stat ${red ? "stat-bad" : amber ? "stat-warn" : "stat-ok"}` }, h("span", { class: "stat-value" }, red ? `${red} red` : amber ? `${amber} amber` : "all green"), h("span", {}, "flows")),
      h("div", { class: "stat" }, h("span", { class: "stat-value small" }, fmtTime(report.asOf)), h("span", {}, `as of · buckets of ${report.bucketMinutes} min · refreshes every 30 s`)),
    ),
    h("h2", {}, "Flows"),
    h("div", { class: "cards" }, report.flows.map(flowCard)),
    h("h2", {}, "Service levels"),
    h("div", { class: "card" }, report.sla.map(slaRow)),
    h(
      "div",
      { class: "two" },
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Open exceptions by reason"),
        sync.exceptionsByReason.length
          ? hbars(sync.exceptionsByReason.map((r) => ({ label: r.reasonCode, value: r.count, cls: "bar-bad" })), { label: "open exceptions by reason" })
          : h("p", { class: "empty" }, "No open exceptions."),
        h("ul", { class: "links" }, sync.exceptionsByReason.map((r) => h("li", {}, h("a", { href: hashWith("exceptions", { reasonCode: r.reasonCode, status: "OPEN" }) }, `${r.reasonCode}: ${r.count}, oldest ${fmtSeconds(r.oldestAgeSeconds)}`)))),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Pollers"),
        table(
          [
            { label: "poller", cell: (p) => p.poller },
            { label: "cursor", cell: (p) => p.value || "never ran" },
            { label: "moved", cell: (p) => fmtTime(p.updatedAt) },
          ],
          sync.pollers,
        ),
      ),
    ),
  );
}
