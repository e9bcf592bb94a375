// Small inline-SVG charts. Colours come from classes in console.css; text is set with textContent.

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(width, height, label, cls, ...children) {
  return s(
    "svg",
    { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: `chart ${cls}` },
    s("title", {}, label),
    ...children,
  );
}

const round = (x) => Math.round(x * 10) / 10;

/** Throughput per bucket as a filled line, failures as red ticks under it. */
export function sparkline(values, { failures = [], width = 240, height = 56, label = "throughput" } = {}) {
  const n = Math.max(values.length, 1);
  const top = Math.max(1, ...values, ...failures);
  const step = n > 1 ? (width - 4) / (n - 1) : 0;
  const y = (v) => round(height - 10 - (v / top) * (height - 16));
  const points = values.map((v, i) => `${round(2 + i * step)},${y(v)}`);
  const children = [s("line", { x1: 0, x2: width, y1: height - 10, y2: height - 10, class: "axis" })];
  if (points.length) {
    const area = `M2,${height - 10} L${points.join(" L")} L${round(2 + (n - 1) * step)},${height - 10} Z`;
    children.push(s("path", { d: area, class: "spark-area" }));
    children.push(s("polyline", { points: points.join(" "), class: "spark-line" }));
    const last = values.length - 1;
    children.push(s("circle", { cx: round(2 + last * step), cy: y(values[last]), r: 2.5, class: "spark-dot" }));
  }
  failures.forEach((f, i) => {
    if (f > 0) {
      const x = round(2 + i * step);
      children.push(s("rect", { x: x - 1.5, y: height - 8, width: 3, height: 7, class: "spark-fail" }, s("title", {}, `${f} failed`)));
    }
  });
  const total = values.reduce((a, b) => a + b, 0);
  return svg(width, height, `${label}: ${total} in the window`, "sparkline", ...children);
}

/** Horizontal bars: rows of {label, value, cls}. */
export function hbars(rows, { width = 420, label = "bars", unit = "" } = {}) {
  const rowH = 22;
  const labelW = Math.min(180, width * 0.42);
  const max = Math.max(1, ...rows.map((r) => r.value));
  const barW = width - labelW - 48;
  const children = rows.map((r, i) => {
    const w = Math.max(1, round((r.value / max) * barW));
    const y = i * rowH;
    return s(
      "g",
      { class: `bar ${r.cls || ""}` },
      s("text", { x: labelW - 6, y: y + 15, class: "bar-label", "text-anchor": "end" }, r.label),
      s("rect", { x: labelW, y: y + 4, width: w, height: rowH - 8, rx: 2 }),
      s("text", { x: labelW + w + 4, y: y + 15, class: "bar-value" }, `${r.value}${unit}`),
    );
  });
  return svg(width, Math.max(rowH, rows.length * rowH), label, "hbars", ...children);
}

/** An SLA figure as a bullet chart: p50 bar, p95 marker, target line. */
export function bullet(figure, { width = 300, height = 38 } = {}) {
  const target = figure.targetSeconds;
  const max = Math.max(target * 1.5, (figure.p95Seconds || 0) * 1.1, 1);
  const x = (v) => round(4 + (v / max) * (width - 8));
  const ok = figure.met !== false;
  const children = [
    s("rect", { x: 4, y: 8, width: width - 8, height: 14, class: "bullet-track" }),
    s("rect", { x: 4, y: 8, width: x(target) - 4, height: 14, class: "bullet-zone" }),
  ];
  if (figure.p50Seconds !== null && figure.p50Seconds !== undefined) {
    children.push(s("rect", { x: 4, y: 11, width: Math.max(1, x(figure.p50Seconds) - 4), height: 8, class: ok ? "bullet-ok" : "bullet-bad" }));
  }
  if (figure.p95Seconds !== null && figure.p95Seconds !== undefined) {
    children.push(s("rect", { x: x(figure.p95Seconds) - 1, y: 6, width: 2.5, height: 18, class: ok ? "bullet-ok" : "bullet-bad" }));
  }
  children.push(s("line", { x1: x(target), x2: x(target), y1: 3, y2: 27, class: "bullet-target" }));
  children.push(s("text", { x: x(target), y: height - 1, "text-anchor": "middle", class: "tick" }, "target"));
  const label = `${figure.name}: p50 ${figure.p50Seconds ?? "–"} s, p95 ${figure.p95Seconds ?? "–"} s, target ${target} s`;
  return svg(width, height, label, "bullet", ...children);
}

/** A ring showing a share 0..1 (success rate); grey when unknown. */
export function ring(share, { size = 54, label = "success rate" } = {}) {
  const r = size / 2 - 5;
  const c = 2 * Math.PI * r;
  const known = share !== null && share !== undefined;
  const cls = !known ? "ring-none" : share >= 0.95 ? "ring-ok" : share >= 0.8 ? "ring-warn" : "ring-bad";
  const text = known ? `${Math.round(share * 100)}%` : "–";
  return svg(
    size,
    size,
    `${label}: ${text}`,
    "ring",
    s("circle", { cx: size / 2, cy: size / 2, r, class: "ring-track" }),
    known
      ? s("circle", {
          cx: size / 2,
          cy: size / 2,
          r,
          class: `ring-value ${cls}`,
          "stroke-dasharray": `${round(c * share)} ${round(c)}`,
          transform: `rotate(-90 ${size / 2} ${size / 2})`,
        })
      : null,
    s("text", { x: size / 2, y: size / 2 + 4, "text-anchor": "middle", class: "ring-text" }, text),
  );
}

/** Steps of a run on a time axis: rows of {name, status, start, end} (ISO strings). */
export function timeline(steps, { width = 760, label = "steps" } = {}) {
  const rowH = 26;
  const labelW = 150;
  const times = steps.flatMap((st) => [st.start, st.end]).filter(Boolean).map((t) => new Date(t).getTime());
  const t0 = times.length ? Math.min(...times) : 0;
  const t1 = times.length ? Math.max(...times) : 1;
  const span = Math.max(1, t1 - t0);
  const plotW = width - labelW - 70;
  const x = (t) => round(labelW + ((new Date(t).getTime() - t0) / span) * plotW);
  const children = [];
  steps.forEach((st, i) => {
    const y = 18 + i * rowH;
    const start = st.start ? x(st.start) : labelW;
    const end = st.end ? x(st.end) : st.start ? labelW + plotW : labelW;
    children.push(
      s(
        "g",
        { class: `step step-${String(st.status).toLowerCase()}` },
        s("text", { x: labelW - 8, y: y + 13, "text-anchor": "end", class: "bar-label" }, st.name),
        s("rect", { x: start, y: y + 2, width: Math.max(6, end - start), height: rowH - 8, rx: 3 }, s("title", {}, `${st.name}: ${st.status}`)),
        s("text", { x: Math.max(start + 6, end) + 6, y: y + 13, class: "bar-value" }, `${st.status}${st.attempts > 1 ? ` ×${st.attempts}` : ""}`),
      ),
    );
  });
  const height = 24 + steps.length * rowH;
  children.push(s("line", { x1: labelW, x2: labelW + plotW, y1: 12, y2: 12, class: "axis" }));
  children.push(s("text", { x: labelW, y: 9, class: "tick" }, "start"));
  children.push(s("text", { x: labelW + plotW, y: 9, "text-anchor": "end", class: "tick" }, `+${((t1 - t0) / 1000).toFixed(2)} s`));
  return svg(width, height, label, "timeline", ...children);
}

/** Two bars per check (source vs target total), scaled per check. */
export function comparison(checks, { width = 560, label = "source vs target" } = {}) {
  const rowH = 44;
  const labelW = 190;
  const barW = width - labelW - 120;
  const children = checks.map((c, i) => {
    const a = Math.abs(Number(c.sourceTotal)) || 0;
    const b = Math.abs(Number(c.targetTotal)) || 0;
    const max = Math.max(a, b, 1e-9);
    const y = i * rowH;
    const cls = c.mismatches > 0 ? "cmp-bad" : "cmp-ok";
    return s(
      "g",
      { class: `cmp ${cls}` },
      s("text", { x: labelW - 8, y: y + 16, "text-anchor": "end", class: "bar-label" }, c.check),
      s("text", { x: labelW - 8, y: y + 32, "text-anchor": "end", class: "tick" }, `${c.source} → ${c.target}`),
      s("rect", { x: labelW, y: y + 5, width: Math.max(1, round((a / max) * barW)), height: 13, class: "cmp-source" }),
      s("rect", { x: labelW, y: y + 21, width: Math.max(1, round((b / max) * barW)), height: 13, class: "cmp-target" }),
      s("text", { x: labelW + barW + 6, y: y + 16, class: "bar-value" }, `${c.sourceTotal} ${c.unit}`),
      s("text", { x: labelW + barW + 6, y: y + 32, class: "bar-value" }, `${c.targetTotal} ${c.unit}`),
    );
  });
  return svg(width, Math.max(rowH, checks.length * rowH), label, "comparison", ...children);
}
