// The node's web console: plain JS, no framework, served by the node itself (console/,
// built into the binary). Every call goes through the Connect protocol in JSON
// (POST /collector.<Service>/<Method>), the same API as every other client, with the
// person's bearer token when they give one.
"use strict";

const TOKEN_KEY = "collector-token";
const NS_KEY = "collector-namespace";
const SVG_NS = "http://www.w3.org/2000/svg";

// ---- DOM helpers ----

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, kids) {
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

function empty(text) {
  return h("p", { class: "empty" }, text);
}

function errorBox(err) {
  return h("p", { class: "error" }, err.message || String(err));
}

function table(cols, rows, rowAttrs) {
  return h("table", {},
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c.title)))),
    h("tbody", {}, rows.map((r) =>
      h("tr", rowAttrs ? rowAttrs(r) : {}, cols.map((c) => h("td", { class: c.cls }, c.cell(r)))))));
}

function stateBadge(state) {
  const st = String(state || "UNKNOWN").replace(/^(WORKFLOW|EXECUTION)_/, "");
  return h("span", { class: `badge state-${st}` }, st);
}

function fmtDuration(sec) {
  sec = Math.max(0, Math.floor(sec));
  const d = Math.floor(sec / 86400), hh = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60), ss = sec % 60;
  return (d ? `${d}d ` : "") + (d || hh ? `${hh}h ` : "") + (d || hh || m ? `${m}m ` : "") + `${ss}s`;
}

function fmtTimeUs(us) {
  const n = Number(us);
  return n ? new Date(n / 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

// ---- calls ----

class ApiError extends Error {
  constructor(code, message, httpStatus) {
    super(message || code);
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(service, method, body) {
  const headers = { "content-type": "application/json", "connect-protocol-version": "1" };
  if (token()) headers.authorization = `Bearer ${token()}`;
  let res;
  try {
    res = await fetch(`/collector.${service}/${method}`, {
      method: "POST", headers, body: JSON.stringify(body || {}),
    });
  } catch (e) {
    throw new ApiError("unavailable", `the node does not answer (${e.message})`, 0);
  }
  const text = await res.text();
  let doc = {};
  try {
    doc = text ? JSON.parse(text) : {};
  } catch (e) {
    doc = { code: "unknown", message: text };
  }
  if (!res.ok) {
    const err = new ApiError(doc.code || "unknown", doc.message || `HTTP ${res.status}`, res.status);
    if (res.status === 401 || err.code === "unauthenticated") showLogin(err.message);
    throw err;
  }
  return doc;
}

// The namespace the views show (the header's field; empty: every namespace, which needs a
// token with its scope on "*").
function namespace() {
  return sessionStorage.getItem(NS_KEY) || "";
}

async function display(type) {
  const r = await api("CollectorConsole", "Display", { displayType: type, namespace: namespace() });
  return { data: r.displayData || {}, summary: r.summary || "" };
}

// ---- sign in ----

function showLogin(message) {
  const box = document.getElementById("login");
  box.hidden = false;
  document.getElementById("login-error").textContent =
    token() ? `The token was refused: ${message}` : "";
  document.getElementById("token").focus();
}

function setupLogin() {
  document.getElementById("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = document.getElementById("token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("token").value = "";
    document.getElementById("login").hidden = true;
    renderWho();
    route();
  });
  renderWho();
  const ns = document.getElementById("ns");
  ns.value = namespace();
  document.getElementById("ns-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (ns.value.trim()) sessionStorage.setItem(NS_KEY, ns.value.trim());
    else sessionStorage.removeItem(NS_KEY);
    route();
  });
}

function renderWho() {
  const who = document.getElementById("whoami");
  who.replaceChildren();
  if (token()) {
    who.append(h("span", {}, "signed in "), h("button", {
      id: "signout", type: "button",
      onclick: () => { sessionStorage.removeItem(TOKEN_KEY); renderWho(); route(); },
    }, "Sign out"));
  }
}

// ---- views ----

let timers = [];
let generation = 0; // bumped on each view change: late answers of the last view are dropped

function every(ms, fn) {
  timers.push(setInterval(fn, ms));
}

function title(text, extra) {
  return h("div", { class: "title" }, h("h2", {}, text), extra);
}

async function viewOverview(root, gen) {
  const { data, summary } = await display("OVERVIEW");
  if (gen !== generation) return;
  const started = Date.now() - (Number(data.uptime_seconds) || 0) * 1000;
  const uptime = h("dd", { id: "uptime" }, fmtDuration((Date.now() - started) / 1000));
  const wf = data.counts || {};
  const cards = h("dl", { class: "facts" },
    h("dt", {}, "Node id"), h("dd", { id: "node-id" }, data.node_id || ""),
    h("dt", {}, "Version"), h("dd", { id: "node-version" }, data.version || ""),
    h("dt", {}, "Address"), h("dd", {}, data.address || ""),
    h("dt", {}, "Default namespace"), h("dd", {}, data.default_namespace || ""),
    h("dt", {}, "Uptime"), uptime,
    h("dt", {}, "Collections"), h("dd", {}, String((data.collections || []).length) + (data.more ? "+" : "")),
    h("dt", {}, "Registered services"), h("dd", {}, String((data.services || []).length)),
    h("dt", {}, "Linked nodes"), h("dd", {}, String((data.peers || []).length)),
    h("dt", {}, "Workflows"), h("dd", {}, Object.entries(wf).filter(([, n]) => n)
      .map(([st, n]) => `${n} ${st.toLowerCase()}`).join(", ") || "none"));
  const chart = new RateChart();
  root.replaceChildren(title("Overview"), h("p", { class: "summary" }, summary), cards,
    h("h3", {}, "Calls per second"), chart.el);
  every(1000, () => {
    uptime.textContent = fmtDuration((Date.now() - started) / 1000);
    chart.poll();
  });
  chart.poll();
}

// The call rate from /metrics (collector_calls_total summed over methods and codes),
// polled every second and drawn over the last minute.
class RateChart {
  constructor() {
    this.w = 600;
    this.hgt = 160;
    this.points = [];
    this.last = null;
    this.line = s("polyline", { class: "rate-line", points: "" });
    this.label = s("text", { x: this.w - 8, y: 18, "text-anchor": "end", class: "rate-now" }, "…");
    this.max = s("text", { x: 8, y: 18, class: "rate-axis" }, "");
    this.el = s("svg", { id: "rate-chart", viewBox: `0 0 ${this.w} ${this.hgt}`, role: "img",
      "aria-label": "calls per second, last minute" },
    s("rect", { x: 0, y: 0, width: this.w, height: this.hgt, class: "chart-bg" }),
    s("line", { x1: 0, y1: this.hgt - 4, x2: this.w, y2: this.hgt - 4, class: "chart-base" }),
    s("text", { x: 8, y: this.hgt - 10, class: "rate-axis" }, "last 60 s"),
    this.line, this.max, this.label);
  }

  async poll() {
    let text;
    try {
      const res = await fetch("/metrics");
      if (!res.ok) return;
      text = await res.text();
    } catch (e) {
      return;
    }
    let total = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith("collector_calls_total{") || line.startsWith("collector_calls_total ")) {
        total += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
      }
    }
    const now = performance.now();
    if (this.last) {
      const dt = (now - this.last.t) / 1000;
      this.points.push(dt > 0 ? Math.max(0, (total - this.last.total) / dt) : 0);
      if (this.points.length > 60) this.points.shift();
    }
    this.last = { t: now, total };
    this.draw();
  }

  draw() {
    const max = Math.max(1, ...this.points);
    const step = this.w / 59;
    const pts = this.points.map((v, i) =>
      `${(i + 60 - this.points.length) * step},${this.hgt - 4 - (v / max) * (this.hgt - 30)}`);
    this.line.setAttribute("points", pts.join(" "));
    const cur = this.points.length ? this.points[this.points.length - 1] : 0;
    this.label.textContent = `${cur.toFixed(1)} calls/s`;
    this.max.textContent = `max ${max.toFixed(1)}`;
    this.el.dataset.samples = String(this.points.length);
    this.el.dataset.peak = String(Math.max(0, ...this.points));
  }
}

async function viewRegistries(root, gen) {
  const { data, summary } = await display("REGISTRIES");
  if (gen !== generation) return;
  const services = data.services || [];
  const byNs = new Map();
  for (const svc of services) {
    if (!byNs.has(svc.namespace)) byNs.set(svc.namespace, []);
    byNs.get(svc.namespace).push(svc);
  }
  root.replaceChildren(title("Registries"), h("p", { class: "summary" }, summary));
  if (!services.length) {
    root.append(empty("No services registered yet."));
    return;
  }
  for (const [ns, list] of [...byNs.entries()].sort()) {
    root.append(h("h3", { class: "ns" }, `Namespace ${ns}`), table([
      { title: "Service", cell: (r) => r.name },
      { title: "Methods", cell: (r) => (r.methods || []).join(", ") },
      { title: "Handler", cell: (r) => r.handler_endpoint || "" },
    ], list, (r) => ({ class: "service", "data-service": r.name })));
  }
}

async function viewCollections(root, gen) {
  const { data, summary } = await display("COLLECTIONS");
  if (gen !== generation) return;
  const list = data.collections || [];
  const fieldErr = h("span", { class: "error", id: "create-error" });
  const form = h("form", { id: "create-form", class: "inline" },
    h("input", { name: "namespace", placeholder: "namespace", value: namespace() || "default", required: true }),
    h("input", { name: "name", placeholder: "collection name", required: true }),
    h("input", { name: "type", placeholder: "message type (empty: any)" }),
    h("button", { type: "submit" }, "Create collection"), fieldErr);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const collection = { namespace: f.get("namespace"), name: f.get("name") };
    if (f.get("type")) collection.messageType = { messageName: f.get("type") };
    fieldErr.textContent = "";
    try {
      await api("CollectionRepo", "CreateCollection", { collection });
      route();
    } catch (e) {
      fieldErr.textContent = e.message;
    }
  });
  const browser = h("div", { id: "browser" });
  root.replaceChildren(title("Collections"), h("p", { class: "summary" }, summary), form);
  if (!list.length) {
    root.append(empty("No collections yet."), browser);
    return;
  }
  root.append(table([
    { title: "Namespace", cell: (r) => r.namespace },
    { title: "Name", cell: (r) => r.name },
    { title: "Type", cell: (r) => r.message_type || "any" },
    { title: "Created", cell: (r) => fmtTimeUs(Number(r.created_at) * 1e6) },
    { title: "", cls: "actions", cell: (r) => [
      h("button", { type: "button", class: "browse", onclick: () => browse(browser, r) }, "Browse"),
      h("button", { type: "button", class: "delete", onclick: () => removeCollection(r, browser) }, "Delete"),
    ] },
  ], list, (r) => ({ class: "collection", "data-name": `${r.namespace}/${r.name}` })), browser);
}

async function removeCollection(r, browser) {
  if (!confirm(`Delete the collection ${r.namespace}/${r.name} and all its records?`)) return;
  try {
    await api("CollectionRepo", "DeleteCollection", { collection: { namespace: r.namespace, name: r.name } });
    route();
  } catch (e) {
    browser.replaceChildren(errorBox(e));
  }
}

function recordView(item) {
  const { "@type": type, ...rest } = item || {};
  const id = rest.id !== undefined ? String(rest.id) : "";
  return h("div", { class: "record", "data-id": id },
    h("div", { class: "record-head" }, h("span", { class: "record-type" }, type || "")),
    h("pre", {}, JSON.stringify(rest, null, 2)));
}

function browse(panel, coll) {
  const searchErr = h("span", { class: "error", id: "search-error" });
  const out = h("div", { id: "records" });
  const q = h("input", { name: "q", id: "search-text", placeholder: "full-text search" });
  const form = h("form", { id: "search-form", class: "inline" }, q,
    h("button", { type: "submit" }, "Search"),
    h("button", { type: "button", onclick: () => { q.value = ""; list(""); } }, "All records"), searchErr);
  const backups = h("div", { id: "backups" });
  panel.replaceChildren(h("h3", { id: "browsing" }, `Records of ${coll.namespace}/${coll.name}`), form, out,
    backups);
  const base = { namespace: coll.namespace, collectionName: coll.name };
  showBackups(backups, coll);

  async function list(pageToken) {
    searchErr.textContent = "";
    try {
      const r = await api("CollectionService", "List", { ...base, pageSize: 50, pageToken });
      const items = r.items || [];
      const nodes = items.length ? items.map(recordView) : [empty("No records.")];
      if (r.nextPageToken) {
        nodes.push(h("button", { type: "button", class: "more", onclick: () => list(r.nextPageToken) }, "Next page"));
      }
      out.replaceChildren(h("p", { class: "count" }, `${r.totalCount || items.length} record(s)`), ...nodes);
    } catch (e) {
      out.replaceChildren(errorBox(e));
    }
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!q.value.trim()) return list("");
    searchErr.textContent = "";
    try {
      const r = await api("CollectionService", "Search", { ...base, fullText: q.value, limit: 50 });
      const results = r.results || [];
      out.replaceChildren(h("p", { class: "count" }, `${results.length} match(es)`),
        ...(results.length ? results.map((x) => recordView(x.item)) : [empty("Nothing matches.")]));
    } catch (e) {
      searchErr.textContent = e.message;
    }
  });
  list("");
}

// A collection's backups: listed, made, verified, restored into a collection of a new name.
async function showBackups(panel, coll) {
  const collection = { namespace: coll.namespace, name: coll.name };
  const note = h("span", { class: "note", id: "backup-note" });
  const make = h("button", { type: "button", id: "backup-now", onclick: async () => {
    note.textContent = "";
    try {
      await api("CollectionRepo", "BackupCollection", { collection });
      showBackups(panel, coll);
    } catch (e) {
      note.textContent = e.message;
      note.className = "error";
    }
  } }, "Back up now");
  const head = [h("h3", {}, "Backups"), h("div", { class: "inline" }, make, note)];
  let list;
  try {
    list = (await api("CollectionRepo", "ListBackups", { collection })).backups || [];
  } catch (e) {
    panel.replaceChildren(...head, errorBox(e));
    return;
  }
  if (!list.length) {
    panel.replaceChildren(...head, empty("No backups of this collection."));
    return;
  }
  panel.replaceChildren(...head, table([
    { title: "Backup", cell: (r) => r.backupId },
    { title: "Taken", cell: (r) => fmtTimeUs(Number(r.timestamp) * 1e6) },
    { title: "Records", cell: (r) => r.recordCount || "0" },
    { title: "Bytes", cell: (r) => r.sizeBytes || "0" },
    { title: "", cls: "actions", cell: (r) => backupActions(r, coll) },
  ], list, (r) => ({ class: "backup", "data-id": r.backupId })));
}

function backupActions(r, coll) {
  const result = h("span", { class: "result" });
  const dest = h("input", { class: "restore-name", placeholder: "restore as…", size: 14,
    value: `${coll.name}_restored` });
  const verify = h("button", { type: "button", class: "verify", onclick: async () => {
    result.className = "result";
    result.textContent = "…";
    try {
      const v = await api("CollectionRepo", "VerifyBackup", { backupId: r.backupId });
      result.textContent = v.isValid ? "valid" : `invalid: ${v.errorMessage || ""}`;
      result.classList.add(v.isValid ? "ok" : "error");
    } catch (e) {
      result.textContent = e.message;
      result.classList.add("error");
    }
  } }, "Verify");
  const restore = h("button", { type: "button", class: "restore", onclick: async () => {
    result.className = "result";
    result.textContent = "…";
    try {
      const x = await api("CollectionRepo", "RestoreBackup",
        { backupId: r.backupId, destNamespace: coll.namespace, destName: dest.value.trim() });
      result.textContent = `restored ${x.recordsRestored || 0} record(s) into ${coll.namespace}/${dest.value.trim()}`;
      result.classList.add("ok");
    } catch (e) {
      result.textContent = e.message;
      result.classList.add("error");
    }
  } }, "Restore");
  return [verify, dest, restore, result];
}

async function viewWorkflows(root, gen) {
  const [{ data, summary }, ex] = await Promise.all([display("WORKFLOWS"), display("EXECUTIONS")]);
  if (gen !== generation) return;
  const wfs = data.workflows || [];
  const recent = ex.data.executions || [];
  const defs = data.definitions || [];
  const detail = h("div", { id: "workflow-detail" });
  const counts = h("p", { class: "counts" }, Object.entries(data.counts || {})
    .map(([st, n]) => h("span", { class: "count" }, stateBadge(st), ` ${n}`)));
  root.replaceChildren(title("Workflows"), h("p", { class: "summary" }, summary), counts);
  if (!wfs.length) {
    root.append(empty("No workflows have run yet."));
  } else {
    root.append(table([
      { title: "Workflow", cell: (r) => h("a", { href: "#workflows", class: "wf-link",
        onclick: (ev) => { ev.preventDefault(); showWorkflow(detail, r, defs); } }, r.id) },
      { title: "Namespace", cell: (r) => r.namespace },
      { title: "Name", cell: (r) => r.workflow_name },
      { title: "State", cell: (r) => stateBadge(r.state) },
      { title: "Started", cell: (r) => fmtTimeUs(r.created_us) },
      { title: "Updated", cell: (r) => fmtTimeUs(r.updated_us) },
      { title: "Error", cell: (r) => r.error || "" },
    ], wfs, (r) => ({ class: "workflow", "data-id": r.id })));
  }
  root.append(h("h3", {}, "Definitions"), defs.length ? table([
    { title: "Namespace", cell: (r) => r.namespace },
    { title: "Name", cell: (r) => r.name },
    { title: "Tasks", cell: (r) => (r.tasks || []).map((t) => t.id).join(", ") },
  ], defs) : empty("No workflow definitions registered."), detail,
  h("h3", {}, "Recent executions"), recent.length ? table([
    { title: "Workflow", cell: (r) => r.workflow_id },
    { title: "Task", cell: (r) => r.task_id },
    { title: "Method", cell: (r) => r.method || "" },
    { title: "Attempt", cell: (r) => r.attempt },
    { title: "State", cell: (r) => stateBadge(r.state) },
    { title: "Executor", cell: (r) => r.executor_id || "" },
    { title: "Error", cell: (r) => r.error || "" },
  ], recent, (r) => ({ class: "recent-execution", "data-task": r.task_id })) : empty("No executions yet."));
}

async function showWorkflow(panel, wf, defs) {
  panel.replaceChildren(h("p", {}, "Loading…"));
  try {
    const st = await api("CollectiveWorker", "GetWorkflowStatus", { namespace: wf.namespace, workflowId: wf.id });
    const w = st.workflow || {};
    const def = defs.find((d) => d.id && d.id === w.workflowDefinitionId) ||
      defs.find((d) => d.namespace === wf.namespace && d.name === wf.workflow_name);
    const execs = w.taskExecutions || {};
    const tasks = def ? def.tasks || [] : Object.keys(execs).map((id) => ({ id, dependencies: [] }));
    const hist = await api("CollectiveWorker", "GetWorkflowHistory",
      { namespace: wf.namespace, workflowId: wf.id, pageSize: 200 });
    const execList = hist.executions || [];
    panel.replaceChildren(
      h("h3", { id: "wf-title" }, `Workflow ${wf.workflow_name} `, stateBadge(w.state)),
      h("p", { class: "mono" }, wf.id),
      tasks.length ? dagSvg(tasks, execs) : empty("This workflow has no tasks to draw."),
      h("h3", {}, "History"),
      execList.length ? table([
        { title: "Task", cell: (r) => r.taskId },
        { title: "Attempt", cell: (r) => r.attemptNumber || 1 },
        { title: "State", cell: (r) => stateBadge(r.state) },
        { title: "Method", cell: (r) => r.methodName || "" },
        { title: "Executor", cell: (r) => r.executorId || "" },
        { title: "Error", cell: (r) => (r.error && r.error.message) || "" },
      ], execList, (r) => ({ class: "execution", "data-task": r.taskId })) : empty("No executions yet."));
  } catch (e) {
    panel.replaceChildren(errorBox(e));
  }
}

// The DAG as boxes in columns by depth (a task sits right of everything it depends on),
// an arrow from each dependency, each box coloured by its task's state.
function dagSvg(tasks, execs) {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const depth = new Map();
  const depthOf = (id, seen) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const deps = (byId.get(id) || {}).dependencies || [];
    const d = deps.length ? 1 + Math.max(...deps.map((x) => depthOf(x, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  const cols = [];
  for (const t of tasks) {
    const d = depthOf(t.id, new Set());
    (cols[d] = cols[d] || []).push(t);
  }
  const BW = 170, BH = 50, GX = 70, GY = 24, PAD = 16;
  const pos = new Map();
  cols.forEach((col, ci) => col.forEach((t, ri) =>
    pos.set(t.id, { x: PAD + ci * (BW + GX), y: PAD + ri * (BH + GY) })));
  const width = PAD * 2 + cols.length * BW + (cols.length - 1) * GX;
  const height = PAD * 2 + Math.max(...cols.map((c) => c.length)) * (BH + GY) - GY;
  const svg = s("svg", { id: "dag", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": "the workflow's tasks and their dependencies" },
  s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" },
  s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }))));
  for (const t of tasks) {
    for (const dep of t.dependencies || []) {
      const a = pos.get(dep), b = pos.get(t.id);
      if (!a || !b) continue;
      const x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x, y2 = b.y + BH / 2, mx = (x1 + x2) / 2;
      svg.append(s("path", { class: "edge", "data-from": dep, "data-to": t.id,
        d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    }
  }
  for (const t of tasks) {
    const p = pos.get(t.id);
    const ex = execs[t.id] || {};
    const st = String(ex.state || "EXECUTION_PENDING").replace(/^EXECUTION_/, "");
    const sub = [st.toLowerCase(), ex.attemptNumber > 1 ? `attempt ${ex.attemptNumber}` : ""]
      .filter(Boolean).join(", ");
    svg.append(s("g", { class: `task state-${st}`, "data-task": t.id, "data-state": st,
      transform: `translate(${p.x},${p.y})` },
    s("title", {}, `${t.id}: ${t.service || ""} ${t.method || ""}`.trim()),
    s("rect", { width: BW, height: BH, rx: 8, ry: 8 }),
    s("text", { x: 12, y: 21, class: "task-id" }, t.id),
    s("text", { x: 12, y: 39, class: "task-state" }, sub)));
  }
  return h("div", { class: "dag-wrap" }, svg);
}

async function viewConnections(root, gen) {
  const [{ data, summary }, ov] = await Promise.all([display("CONNECTIONS"), display("OVERVIEW")]);
  if (gen !== generation) return;
  const peers = data.peers || [];
  root.replaceChildren(title("Connections"), h("p", { class: "summary" }, summary));
  if (!peers.length) {
    root.append(empty("No linked nodes."));
    return;
  }
  root.append(meshSvg(ov.data.node_id || "this node", peers), table([
    { title: "Node", cell: (r) => r.id || "" },
    { title: "Address", cell: (r) => r.address },
    { title: "Health", cell: (r) => h("span", { class: `badge health-${r.state}` }, r.state) },
    { title: "Direction", cell: (r) => r.direction },
    { title: "Namespaces", cell: (r) => (r.namespaces || []).join(", ") },
    { title: "In flight", cell: (r) => r.outstanding },
    { title: "Failures", cell: (r) => r.failures },
    { title: "Last error", cell: (r) => r.last_error || "" },
  ], peers, (r) => ({ class: "peer", "data-state": r.state })));
}

// This node in the middle, its linked nodes around it, each line coloured by health.
function meshSvg(self, peers) {
  const W = 520, H = 300, cx = W / 2, cy = H / 2, R = 110;
  const svg = s("svg", { id: "mesh", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "linked nodes" });
  const spots = peers.map((p, i) => {
    const a = (2 * Math.PI * i) / peers.length;
    return { p, x: cx + R * Math.cos(a) * 1.6, y: cy + R * Math.sin(a) };
  });
  for (const { p, x, y } of spots) {
    svg.append(s("line", { x1: cx, y1: cy, x2: x, y2: y, class: `link health-${p.state}` }));
  }
  const node = (x, y, label, cls, sub) => s("g", { class: cls, transform: `translate(${x},${y})` },
    s("circle", { r: 26 }), s("text", { y: 44, "text-anchor": "middle" }, label),
    sub ? s("text", { y: 58, "text-anchor": "middle", class: "sub" }, sub) : null);
  svg.append(node(cx, cy, short(self), "mesh-node self", "this node"));
  for (const { p, x, y } of spots) {
    svg.append(node(x, y, short(p.id || p.address), `mesh-node peer health-${p.state}`, p.state));
  }
  return svg;
}

function short(id) {
  id = String(id || "");
  return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id;
}

const VIEWS = {
  overview: viewOverview,
  registries: viewRegistries,
  collections: viewCollections,
  workflows: viewWorkflows,
  connections: viewConnections,
};

async function route() {
  for (const t of timers) clearInterval(t);
  timers = [];
  const gen = ++generation;
  const name = (location.hash || "#overview").slice(1);
  const view = VIEWS[name] ? name : "overview";
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === view);
  }
  const root = document.getElementById("view");
  root.dataset.view = view;
  root.dataset.ready = "";
  root.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  try {
    await VIEWS[view](root, gen);
  } catch (e) {
    if (gen !== generation) return;
    root.replaceChildren(title(view[0].toUpperCase() + view.slice(1)),
      e.code === "unauthenticated" ? empty("Sign in to see this view.") : errorBox(e));
  }
  if (gen === generation) root.dataset.ready = view;
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  setupLogin();
  route();
});
