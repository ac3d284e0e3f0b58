// The dashboard page: fetch the panels every few seconds, draw them with
// Plotly, and show one request on demand. Every value from the server goes
// into the page as text (textContent), never as markup.
"use strict";

const REFRESH_MS = 5000;
const PICO = 1e12;
const layout = (extra) => Object.assign({ margin: { t: 10, r: 10, b: 60, l: 60 }, barmode: "group", showlegend: true }, extra);
const config = { displaylogo: false, responsive: true };

function usd(pico) { return Number(pico || 0) / PICO; }

function draw(id, traces, extra) {
  const div = document.getElementById(id);
  const empty = traces.every((t) => !(t.x || t.y || []).length);
  Plotly.react(div, traces, layout(Object.assign(empty ? { annotations: [{ text: "no data yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] } : {}, extra)), config);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function fill(tableId, rows, columns, onClick) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (!rows.length) {
    const tr = body.insertRow();
    const td = cell(tr, "none");
    td.colSpan = 20;
    td.className = "empty";
    return;
  }
  for (const r of rows) {
    const tr = body.insertRow();
    columns.forEach((c) => cell(tr, typeof c === "function" ? c(r) : r[c]));
    if (onClick) { tr.className = "clickable"; tr.addEventListener("click", () => onClick(r)); }
    if (r.state) tr.classList.add(r.state);
  }
}

const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "");

function render(p) {
  const m = p.per_minute;
  const minutes = m.map((r) => new Date(r.minute * 1000));
  draw("chart-per-minute", [
    { type: "bar", name: "requests", x: minutes, y: m.map((r) => r.requests) },
    { type: "bar", name: "errors", x: minutes, y: m.map((r) => r.errors), marker: { color: "#d62728" } },
  ], { xaxis: { type: "date" } });
  draw("chart-cost-tenant", [{ type: "bar", name: "USD", x: p.cost_by_tenant.map((r) => r.tenant_id || "(none)"), y: p.cost_by_tenant.map((r) => usd(r.cost_pico_usd)) }]);
  draw("chart-cost-model", [{ type: "bar", name: "USD", x: p.cost_by_model.map((r) => r.model || "(none)"), y: p.cost_by_model.map((r) => usd(r.cost_pico_usd)) }]);
  draw("chart-by-api", [
    { type: "bar", name: "requests", x: p.by_api.map((r) => r.api || "(none)"), y: p.by_api.map((r) => r.requests) },
    { type: "bar", name: "errors", x: p.by_api.map((r) => r.api || "(none)"), y: p.by_api.map((r) => r.errors), marker: { color: "#d62728" } },
  ]);
  // A tool as callers name it (server__tool); hover shows its p50/p95 and cost.
  const tool = (r) => `${r.server}__${r.tool}`;
  const toolHover = p.tools.map((r) => `p50 ${(r.latency_ms || [])[0]} ms, p95 ${(r.latency_ms || [])[1]} ms, ${usd(r.cost_pico_usd).toFixed(6)} USD`);
  draw("chart-tools", [
    { type: "bar", name: "calls", x: p.tools.map(tool), y: p.tools.map((r) => r.calls), hovertext: toolHover },
    { type: "bar", name: "failed", x: p.tools.map(tool), y: p.tools.map((r) => r.errors), marker: { color: "#d62728" } },
    { type: "bar", name: "isError", x: p.tools.map(tool), y: p.tools.map((r) => r.tool_errors), marker: { color: "#ff7f0e" } },
  ]);
  // REST calls per service (and version), method and route template, busiest first: the first 40
  // keep the chart readable. p95 latency (ms) on its own axis; hover shows p50 and the bytes.
  const rest = p.rest.slice(0, 40);
  const restLabel = (r) => `${r.service}${r.version > 1 ? `/v${r.version}` : ""} ${r.method || "*"} ${r.route || "(no route)"}`;
  const restHover = rest.map((r) => `p50 ${(r.latency_ms || [])[0]} ms, p95 ${(r.latency_ms || [])[1]} ms, ${r.request_bytes} B in, ${r.response_bytes} B out, ${usd(r.cost_pico_usd).toFixed(6)} USD`);
  draw("chart-rest", [
    { type: "bar", name: "calls", x: rest.map(restLabel), y: rest.map((r) => r.calls), hovertext: restHover },
    { type: "bar", name: "errors", x: rest.map(restLabel), y: rest.map((r) => r.errors), marker: { color: "#d62728" } },
    { type: "scatter", mode: "markers", name: "p95 ms", x: rest.map(restLabel), y: rest.map((r) => (r.latency_ms || [])[1]), yaxis: "y2", marker: { color: "#2ca02c", size: 10 } },
  ], {
    yaxis2: { overlaying: "y", side: "right", title: { text: "p95 ms" }, rangemode: "tozero" },
    // The legend above the plot: on the right it would sit on the second axis.
    legend: { orientation: "h", x: 0, y: 1.15 },
    margin: { t: 30, r: 60, b: 60, l: 60 },
  });
  const label = (r) => `${r.model} @ ${r.deployment || "-"}`;
  const q = (rows, field) => ["p50", "p95", "p99"].map((name, i) => ({ type: "bar", name, x: rows.map(label), y: rows.map((r) => (r[field] || [])[i]) }));
  draw("chart-latency", q(p.latency, "latency_ms"));
  draw("chart-ttft", q(p.latency, "ttft_ms"));
  draw("chart-cache", [{ type: "bar", name: "hit rate", x: p.cache.map((r) => r.model), y: p.cache.map((r) => r.hit_rate) }], { yaxis: { range: [0, 1], tickformat: ".0%" } });
  draw("chart-budgets", [{
    type: "bar", orientation: "h", name: "% used",
    y: p.budgets.map((b) => `${b.scope} ${b.id} (${b.period})`),
    x: p.budgets.map((b) => (Number(b.limit_usd) ? (100 * Number(b.committed_usd)) / Number(b.limit_usd) : 0)),
  }], { xaxis: { range: [0, 100] }, margin: { t: 10, r: 10, b: 40, l: 160 } });
  fill("alerts", p.alerts, ["state", "rule", "subject", "value", "threshold", (r) => when(r.fired_at_ms), (r) => when(r.resolved_at_ms), "detail"]);
  fill("batches", p.batches, ["batch_id", "tenant_id", "lines", "succeeded", "failed", (r) => Number(r.prompt_tokens) + Number(r.completion_tokens), (r) => (r.unit ? `${r.units} ${r.unit}` : ""), (r) => usd(r.cost_pico_usd).toFixed(8), (r) => when(r.first_ms), (r) => when(r.last_ms)]);
  fill("recent", p.recent, [(r) => when(r.ts_ms), "request_id", "tenant_id", "key_id", "api", "model", "status", "tokens", (r) => usd(r.cost_pico_usd).toFixed(8), "latency_ms"], (r) => showRequest(r.request_id));
}

async function getJSON(url) {
  const resp = await fetch(url, { credentials: "same-origin" });
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error ? body.error.message : `HTTP ${resp.status}`);
  return body;
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  const status = document.getElementById("status");
  try {
    const minutes = document.getElementById("minutes").value;
    const hours = document.getElementById("hours").value;
    render(await getJSON(`/dashboard/api/panels?minutes=${minutes}&hours=${hours}`));
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (err) {
    status.textContent = `could not update: ${err.message}`;
  } finally {
    busy = false;
  }
}

function section(parent, title, rows, columns) {
  const h = document.createElement("h3");
  h.textContent = title;
  parent.appendChild(h);
  if (!rows.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "none";
    parent.appendChild(p);
    return;
  }
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  columns.forEach((c) => cell(head, c));
  const body = table.createTBody();
  rows.forEach((r) => { const tr = body.insertRow(); columns.forEach((c) => cell(tr, Array.isArray(r[c]) ? r[c].join(" / ") : r[c])); });
  parent.appendChild(table);
}

async function showRequest(id) {
  document.getElementById("request-id").value = id;
  const out = document.getElementById("request-detail");
  out.replaceChildren();
  let v;
  try {
    v = await getJSON(`/dashboard/api/requests/${encodeURIComponent(id)}`);
  } catch (err) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = err.message;
    out.appendChild(p);
    return;
  }
  const r = v.request;
  section(out, "Request", [Object.assign({}, r, { cost_usd: usd(r.cost_pico_usd).toFixed(8) })], ["request_id", "ts", "tenant_id", "key_id", "model", "deployment", "status", "error_code", "prompt_tokens", "completion_tokens", "cost_usd", "attempts", "cache_hit"]);
  const ms = (ns) => (Number(ns) / 1e6).toFixed(2);
  section(out, "Where the time went (ms)", [{ total: ms(r.latency_ns), ttft: ms(r.ttft_ns), ingress: ms(r.ingress_ns), policy: ms(r.policy_ns), redact: ms(r.redact_ns), route: ms(r.route_ns), cache: ms(r.cache_ns), provider: ms(r.provider_ns), upstream_ttfb: ms(r.upstream_ttfb_ns), upstream_stream: ms(r.upstream_stream_ns), bus: ms(r.bus_ns) }], ["total", "ttft", "ingress", "policy", "redact", "route", "cache", "provider", "upstream_ttfb", "upstream_stream", "bus"]);
  section(out, "Stages", v.stages.map((s) => Object.assign({}, s, { ms: ms(s.duration_ns) })), ["stage", "ms", "outcome"]);
  section(out, "Upstream attempts", v.attempts.map((a) => Object.assign({}, a, { ttfb_ms: ms(a.ttfb_ns), ms: ms(a.duration_ns) })), ["number", "deployment", "provider", "upstream_model", "status", "error_code", "ttfb_ms", "ms"]);
  if (v.children.length) section(out, "Steps (prompt API)", v.children, ["request_id", "model", "status", "prompt_tokens", "completion_tokens"]);
  const h = document.createElement("h3");
  h.textContent = "Bodies (call log)";
  out.appendChild(h);
  if (!v.call_log) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "not kept: this tenant has not opted in to call logs";
    out.appendChild(p);
  } else {
    for (const [title, field] of [["request", "request_body"], ["answer", "response_body"]]) {
      const pre = document.createElement("pre");
      pre.className = `body-${title}`;
      let text = v.call_log[field];
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* a cut body is shown as stored */ }
      pre.textContent = `${title}:\n${text}`;
      out.appendChild(pre);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("request-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = document.getElementById("request-id").value.trim();
    if (id) showRequest(id);
  });
  for (const id of ["minutes", "hours"]) document.getElementById(id).addEventListener("change", refresh);
  refresh();
  setInterval(refresh, REFRESH_MS);
});
