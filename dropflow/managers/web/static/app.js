/* dropflow monitor: one page, plain JavaScript, no build step and nothing fetched from elsewhere.
 *
 * Routes live in the URL's hash: #/ (sessions and members), #/session/ID[/TAB] and #/session/ID/drop/UID.
 * Data comes from the manager's JSON endpoints under api/, polled while something is running; each poll
 * waits for the previous answer and backs off when answers are slow, so a busy manager is not flooded.
 * The token is asked once, kept in this tab's sessionStorage and sent as "Authorization: Bearer".
 * Every text from the server is put in the page as text (never as HTML).
 */
"use strict";

const TOKEN_KEY = "dropflow-token";
const STATES = ["INITIALIZED", "NOT_RUN", "WRITING", "RUNNING", "COMPLETED", "FINISHED", "SKIPPED", "ERROR",
                "CANCELLED", "EXPIRED", "DELETED"];
const ENDED = new Set(["FINISHED", "FAILED", "CANCELLED"]);
const CAUSE_WORDS = new Set(["trigger", "cancel", "lifespan", "collector", "unused", "retry", "session"]);
const PAGE = 100;

let generation = 0;        // bumped on every route change: pollers of an older page stop
let lastAnswer = null;
const main = document.getElementById("main");

class AuthError extends Error {}

/* -- the token ------------------------------------------------------------------------------------- */

(function takeTokenFromUrl() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
  }
})();

async function api(path, params) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  let url = "api/" + path;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += "?" + s;
  }
  const resp = await fetch(url, {headers, cache: "no-store"});
  if (resp.status === 401) throw new AuthError("unauthorized");
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error.message : resp.status + " " + resp.statusText;
    throw new Error(msg);
  }
  lastAnswer = new Date();
  document.getElementById("live").textContent = "updated " + lastAnswer.toLocaleTimeString();
  document.getElementById("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  return body;
}

function showLogin(error) {
  generation++;
  put(main, document.getElementById("login-template").content.cloneNode(true));
  if (error) document.getElementById("login-error").textContent = error;
  const input = document.getElementById("token");
  input.focus();
  document.getElementById("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    route();
  });
}

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin();
});

/* -- small helpers ----------------------------------------------------------------------------------- */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/* Replace an element's children: arrays are flattened, null and undefined left out. */
function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

const badge = (state) => h("span", {class: "state " + state}, state);
const sessionHref = (sid, tab) => "#/session/" + encodeURIComponent(sid) + (tab ? "/" + tab : "");
const dropHref = (sid, uid) => "#/session/" + encodeURIComponent(sid) + "/drop/" + encodeURIComponent(uid);

function when(t) {
  if (t === null || t === undefined) return "-";
  const d = new Date(t * 1000);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:` +
         `${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function secs(s) {
  if (s === null || s === undefined) return "-";
  if (s < 1) return (s * 1000).toFixed(1) + " ms";
  if (s < 120) return s.toFixed(2) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function num(n) { return (n || 0).toLocaleString("en"); }

function stateBar(counts) {
  const total = Object.values(counts || {}).reduce((a, b) => a + b, 0);
  const bar = h("div", {class: "bar", title: STATES.filter((s) => counts[s]).map((s) => `${s} ${num(counts[s])}`).join(", ")});
  if (!total) return bar;
  for (const s of STATES) {
    if (!counts[s]) continue;
    bar.append(h("span", {style: `width:${(100 * counts[s] / total).toFixed(3)}%;background:var(--${s})`}));
  }
  return bar;
}

function countsText(counts) {
  return STATES.filter((s) => counts && counts[s]).map((s) => `${s} ${num(counts[s])}`).join(" \u00b7 ");
}

function legend() {
  return h("div", {class: "legend"}, STATES.map((s) => h("span", {}, h("i", {style: `background:var(--${s})`}), s)));
}

function progress(settled, size) {
  const pct = size ? Math.min(100, 100 * settled / size) : 0;
  return h("div", {class: "progress", title: pct.toFixed(1) + "%"}, h("div", {style: `width:${pct}%`}));
}

function table(headers, rows, attrs) {
  return h("table", attrs || {},
           h("thead", {}, h("tr", {}, headers.map((x) => h("th", {class: /^(drops|count|#|seconds|mean|max)/i.test(x) ? "num" : null}, x)))),
           h("tbody", {}, rows));
}

/* Poll fn every `base` ms (more when answers are slow) until it returns false or the page changes. */
function poll(fn, base) {
  const mine = generation;
  const step = async () => {
    if (mine !== generation) return;
    const t0 = performance.now();
    let again = true;
    try {
      again = await fn();
    } catch (e) {
      if (e instanceof AuthError) { showLogin("the token was refused"); return; }
      const box = document.getElementById("page-error");
      if (box) box.textContent = "cannot reach the manager: " + e.message;
    }
    if (mine !== generation || again === false) return;
    const took = performance.now() - t0;
    setTimeout(step, Math.max(base, 4 * took));
  };
  step();
}

/* -- the sessions page ------------------------------------------------------------------------------- */

function showManager(m) {
  document.getElementById("manager").textContent =
    `${{nm: "node manager", dim: "island manager", mm: "master manager"}[m.role] || m.role} ${m.name} \u00b7 dropflow ${m.version}`;
}

/* The header names the manager: asked once when a page other than the sessions page is opened first. */
function loadHeader() {
  if (document.getElementById("manager").textContent) return;
  api("monitor").then((o) => showManager(o.manager)).catch(() => {});
}

function pageHome() {
  const sessions = h("tbody");
  const members = h("tbody");
  put(main,
    h("h1", {}, "Sessions"),
    h("p", {id: "page-error", class: "error"}),
    h("table", {id: "sessions"},
      h("thead", {}, h("tr", {}, ["session", "state", "progress", "drops", "created", "duration", "nodes"].map((x) => h("th", {}, x)))),
      sessions),
    h("h2", {id: "members-title"}, "Members"),
    h("table", {id: "members"},
      h("thead", {}, h("tr", {}, ["name", "state", "heartbeat", "sessions", "owner queue", "app threads", "worker processes"].map((x) => h("th", {}, x)))),
      members),
  );
  poll(async () => {
    const o = await api("monitor");
    const m = o.manager;
    showManager(m);
    document.getElementById("members-title").textContent = m.role === "nm" ? "This node" : (m.role === "mm" ? "Islands" : "Nodes");
    const now = Date.now() / 1000;
    put(sessions, ...o.sessions.map((s) => {
      const ended = ENDED.has(s.status);
      const end = ended ? (s.ended || now) : now;
      return h("tr", {class: "click", dataset: {session: s.sessionId}, onclick: () => { location.hash = sessionHref(s.sessionId); }},
        h("td", {}, h("a", {href: sessionHref(s.sessionId)}, s.sessionId)),
        h("td", {}, badge(s.status)),
        h("td", {}, progress(s.settled, s.size)),
        h("td", {class: "num progress-text"}, `${num(s.settled)} / ${num(s.size)}`),
        h("td", {}, when(s.created)),
        h("td", {}, s.created ? secs(end - s.created) : "-"),
        h("td", {}, (s.nodes || []).join(", ")));
    }));
    if (!o.sessions.length) sessions.append(h("tr", {}, h("td", {colspan: 7, class: "muted"}, "no sessions")));
    put(members, ...o.members.map((n) => {
      const load = n.load || {};
      const t = load.threads || {}, p = load.processes || {};
      return h("tr", {dataset: {member: n.name}},
        h("td", {}, n.name),
        h("td", {}, badge(n.status || "ok"), n.error ? h("div", {class: "error"}, n.error) : null),
        h("td", {}, n.silent_for === null || n.silent_for === undefined ? "-" : `answered ${secs(n.silent_for)} ago`),
        h("td", {class: "num"}, n.sessions ?? "-"),
        h("td", {class: "num"}, load.queue ?? "-"),
        h("td", {}, load.threads ? `${t.busy} busy of ${t.threads} (max ${t.size}), ${t.queued} queued` : "-"),
        h("td", {}, load.processes ? `${p.busy} busy of ${p.processes} (max ${p.size}), ${p.queued} queued` : "-"));
    }));
    return true;
  }, 2000);
}

/* -- a session ----------------------------------------------------------------------------------------- */

const TABS = [["graph", "Graph"], ["nodes", "Nodes"], ["failures", "Failures"], ["why", "Why"], ["timings", "Timings"]];

function pageSession(sid, tab) {
  tab = tab || "graph";
  const title = h("h1", {}, sid, " ", h("span", {id: "session-state"}));
  const bar = h("div", {id: "session-progress"});
  const text = h("div", {id: "progress-text", class: "muted"});
  const facts = h("div", {class: "facts", id: "facts"});
  const error = h("div", {id: "session-error", class: "error"});
  const tabs = h("nav", {class: "tabs"}, TABS.map(([k, label]) =>
    h("a", {href: sessionHref(sid, k), class: k === tab ? "active" : null, id: "tab-" + k}, label)));
  const body = h("div", {id: "tab-body"});
  put(main, title, h("p", {id: "page-error", class: "error"}), bar, text, facts, error, tabs, body);
  const view = {sid, tab, body, drill: null, last: null, whyLoaded: false};
  if (tab === "graph") setupGraph(view);
  if (tab === "nodes") setupNodes(view);
  if (tab === "failures") setupFailures(view);
  if (tab === "why") setupWhy(view);
  if (tab === "timings") setupTimings(view);
  let ticks = 0;
  poll(async () => {
    const v = await api(`sessions/${encodeURIComponent(sid)}/monitor`);
    view.last = v;
    const ended = ENDED.has(v.status);
    put(document.getElementById("session-state"), badge(v.status));
    put(bar, progress(v.settled, v.size));
    const pct = v.size ? (Math.floor(1000 * v.settled / v.size) / 10).toFixed(1) : "0.0";  // 99.9%, not 100.0%, until done
    text.textContent = `${num(v.settled)} of ${num(v.size)} drops settled (${pct}%)` +
      (v.failure_count ? ` \u00b7 ${num(v.failure_count)} failed` : "");
    const t = v.times || {};
    const now = Date.now() / 1000;
    put(facts,
      h("div", {}, h("b", {}, "created"), when(t.created)),
      h("div", {}, h("b", {}, "deploy"), t.deploy && (t.running || t.run) ? secs((t.running || t.run) - t.deploy) : "-"),
      h("div", {}, h("b", {}, ended ? "ran" : "running for"), t.run ? secs((t.end || now) - t.run) : "-"),
      h("div", {}, h("b", {}, "ended"), when(t.end)),
      v.census ? h("div", {}, h("b", {}, "counted"), `${secs(v.census.age)} ago in ${secs(v.census.cost)}`) : null);
    error.textContent = v.error ? "error: " + v.error : "";
    for (const [k, label] of TABS) {
      if (k === "failures") document.getElementById("tab-failures").textContent = `${label} (${num(v.failure_count)})`;
    }
    view.update && view.update(v, ticks++);
    return !ended || ticks < 2;
  }, 1000);
}

function setupGraph(view) {
  const groups = h("tbody");
  const drill = h("div", {id: "drill"});
  put(view.body,
    legend(),
    h("p", {class: "muted"}, "Drops counted by the logical-graph node they were made from. Click a row for its drops."),
    h("table", {id: "groups"}, h("thead", {}, h("tr", {}, ["node of the graph", "kind", "drops", "states", ""].map((x) => h("th", {class: x === "drops" ? "num" : null}, x)))), groups),
    drill);
  view.update = (v, tick) => {
    const rows = v.groups.map((g) => {
      const total = Object.values(g.counts).reduce((a, b) => a + b, 0);
      return h("tr", {class: "click" + (view.drill && view.drill.group === g.key ? " selected" : ""), dataset: {group: g.key},
                      onclick: () => openDrill(view, drill, {group: g.key, title: g.label})},
        h("td", {}, g.label, g.label !== g.key ? h("span", {class: "muted"}, ` (${g.key})`) : null),
        h("td", {}, g.kind),
        h("td", {class: "num"}, num(total)),
        h("td", {}, stateBar(g.counts)),
        h("td", {class: "muted"}, countsText(g.counts)));
    });
    put(groups, ...rows);
    if (!rows.length) groups.append(h("tr", {}, h("td", {colspan: 5, class: "muted"}, "no drops deployed yet")));
    if (view.drill && tick % 3 === 0) view.drill.reload();
  };
}

function setupNodes(view) {
  const nodes = h("tbody");
  const drill = h("div", {id: "drill"});
  put(view.body, legend(),
    h("table", {id: "nodes"}, h("thead", {}, h("tr", {}, ["node", "state", "drops", "states", "owner queue", "apps busy"].map((x) => h("th", {}, x)))), nodes),
    drill);
  view.update = (v, tick) => {
    put(nodes, ...Object.entries(v.nodes).sort().map(([name, n]) => {
      const totals = n.totals || {};
      const load = n.load || {};
      const total = Object.values(totals).reduce((a, b) => a + b, 0);
      const busy = load.threads ? `${load.threads.busy} threads, ${load.processes.busy} processes` : "-";
      return h("tr", {class: "click", dataset: {node: name}, onclick: () => openDrill(view, drill, {node: name, title: "node " + name})},
        h("td", {}, name, n.island ? h("span", {class: "muted"}, ` (island ${n.island})`) : null),
        h("td", {}, badge(n.status || "?"),
          ["SILENT", "LOST"].includes(n.status) && n.silent_for ? h("span", {class: "muted"}, ` silent for ${secs(n.silent_for)}`) : null,
          n.error ? h("div", {class: "error"}, n.error) : null),
        h("td", {class: "num"}, num(total)),
        h("td", {}, stateBar(totals)),
        h("td", {class: "num"}, load.queue ?? "-"),
        h("td", {}, busy));
    }));
    if (view.drill && tick % 3 === 0) view.drill.reload();
  };
}

/* The drops of a group or a node, a page at a time, with a state filter. */
function openDrill(view, box, what) {
  let offset = 0;
  let state = "";
  const rows = h("tbody");
  const info = h("span", {class: "muted", id: "drill-info"});
  const select = h("select", {id: "drill-state", onchange: () => { state = select.value; offset = 0; reload(); }},
    h("option", {value: ""}, "any state"), STATES.map((s) => h("option", {value: s}, s)));
  const prev = h("button", {type: "button", onclick: () => { offset = Math.max(0, offset - PAGE); reload(); }}, "\u2190 previous");
  const next = h("button", {type: "button", onclick: () => { offset += PAGE; reload(); }}, "next \u2192");
  put(box, h("h2", {}, what.title), h("div", {class: "pager"}, select, prev, next, info),
    h("table", {id: "drops"}, h("thead", {}, h("tr", {}, ["drop", "kind", "state", "node"].map((x) => h("th", {}, x)))), rows));
  async function reload() {
    const r = await api(`sessions/${encodeURIComponent(view.sid)}/monitor/drops`,
                        {group: what.group, node: what.node, state, offset, limit: PAGE});
    info.textContent = r.total ? `${num(offset + 1)}\u2013${num(Math.min(offset + PAGE, r.total))} of ${num(r.total)}` : "none";
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= r.total;
    put(rows, ...r.drops.map((d) => h("tr", {dataset: {uid: d.uid}},
      h("td", {}, h("a", {href: dropHref(view.sid, d.uid)}, d.uid), d.name ? h("span", {class: "muted"}, " " + d.name) : null),
      h("td", {}, d.kind), h("td", {}, badge(d.state)), h("td", {}, d.node))));
  }
  view.drill = {group: what.group, node: what.node, reload: () => reload().catch(() => {})};
  for (const tr of document.querySelectorAll("tr.selected")) tr.classList.remove("selected");
  reload().catch((e) => { info.textContent = e.message; });
  box.scrollIntoView({behavior: "smooth", block: "nearest"});
}

function setupFailures(view) {
  const list = h("div", {id: "failures"});
  put(view.body, list);
  view.update = (v) => {
    if (!v.failures.length) { put(list, h("p", {class: "muted"}, "no drop failed")); return; }
    put(list,
      v.failure_count > v.failures.length ? h("p", {class: "muted"}, `the first ${v.failures.length} of ${num(v.failure_count)}`) : null,
      ...v.failures.map((f) => h("div", {class: "card failure", dataset: {uid: f.uid}},
        h("div", {}, h("a", {href: dropHref(view.sid, f.uid)}, f.uid), h("span", {class: "muted"}, ` ${f.kind} on ${f.node}`)),
        h("pre", {class: "cause"}, f.message))));
  };
}

function renderWhy(sid, r, box) {
  const parts = [h("ul", {class: "verdict", id: "verdict"}, (r.verdict || []).map((line) => h("li", {}, line)))];
  if (r.blockers && r.blockers.length) {
    parts.push(h("h2", {}, "Waiting for inputs being written"),
      table(["input", "on", "written by", "apps waiting"], r.blockers.map((b) => h("tr", {},
        h("td", {}, h("a", {href: dropHref(sid, b.input)}, b.input)),
        h("td", {}, b.node),
        h("td", {}, (b.producers || []).map((p) => h("div", {}, h("a", {href: dropHref(sid, p.uid)}, p.uid),
          ` on ${p.node}`, p.since ? ` for ${secs(Date.now() / 1000 - p.since)}` : "", p.state ? ` (${p.state})` : ""))),
        h("td", {class: "num"}, num(b.waiting_count), h("div", {class: "muted"}, (b.waiting || []).join(", ")))))));
  }
  if (r.running && r.running.length) {
    parts.push(h("h2", {}, `Running (${num(r.running_count)}), longest first`),
      table(["app", "kind", "node", "started", "for"], r.running.map((a) => h("tr", {},
        h("td", {}, h("a", {href: dropHref(sid, a.uid)}, a.uid), a.transfer ? h("span", {class: "muted"}, " (moving data)") : null),
        h("td", {}, a.kind), h("td", {}, a.node), h("td", {}, when(a.since)),
        h("td", {class: "num"}, a.since ? secs(Date.now() / 1000 - a.since) : "-")))));
  }
  if (r.transfers && r.transfers.length) {
    parts.push(h("h2", {}, "Transfers in flight"), table(["", "drop", "other node", "for apps"], r.transfers.map((t) =>
      h("tr", {}, h("td", {}, t.direction), h("td", {}, t.uid), h("td", {}, t.peer), h("td", {}, (t.apps || []).join(", "))))));
  }
  if (r.critical_path && r.critical_path.steps && r.critical_path.steps.length) {
    const steps = r.critical_path.steps;
    parts.push(h("h2", {}, "Critical path" + (r.critical_path.complete ? "" : " (as far back as the logs reach)")),
      table(["drop", "kind", "node", "started", "ended", "seconds"], steps.map((s) => h("tr", {},
        h("td", {}, h("a", {href: dropHref(sid, s.uid)}, s.uid)), h("td", {}, s.kind), h("td", {}, s.node),
        h("td", {}, when(s.start)), h("td", {}, when(s.end)), h("td", {class: "num"}, s.seconds === undefined ? "" : secs(s.seconds)))),
        {id: "critical-path"}));
  }
  put(box, ...parts);
}

function setupWhy(view) {
  const box = h("div", {id: "why"}, h("p", {class: "muted"}, "asking every node\u2026"));
  const button = h("button", {type: "button", onclick: () => load()}, "ask again");
  put(view.body, h("div", {class: "pager"}, button, h("span", {class: "muted"}, "what the session waits for, now")), box);
  let busy = false;
  async function load() {
    if (busy) return;
    busy = true;
    try { renderWhy(view.sid, await api(`sessions/${encodeURIComponent(view.sid)}/why`), box); }
    catch (e) { put(box, h("p", {class: "error"}, e.message)); }
    finally { busy = false; }
  }
  load();
  view.update = (v, tick) => { if (tick % 5 === 4 && !ENDED.has(v.status)) load(); };
}

function setupTimings(view) {
  const box = h("div", {id: "timings"}, h("p", {class: "muted"}, "reading the logs\u2026"));
  const path = h("div", {id: "timings-path"});
  put(view.body, path, box);  // the critical path first, once the session has ended
  async function load(v) {
    const t = await api(`sessions/${encodeURIComponent(view.sid)}/monitor/timings`);
    const groups = Object.entries(t.by_group).sort((a, b) => b[1].sum - a[1].sum);
    put(box,
      t.log_full ? h("p", {class: "muted"}, `the event log reaches back to ${when(t.log_from)} only`) : null,
      h("h2", {}, "Slowest apps"),
      table(["app", "node", "ended", "seconds"], t.slowest.map((a) => h("tr", {},
        h("td", {}, h("a", {href: dropHref(view.sid, a.uid)}, a.uid)), h("td", {}, a.node), h("td", {}, when(a.end)),
        h("td", {class: "num"}, secs(a.seconds))))),
      h("h2", {}, "By node of the graph"),
      table(["node of the graph", "count", "mean", "max", "total"], groups.map(([k, g]) => h("tr", {},
        h("td", {}, k), h("td", {class: "num"}, num(g.count)), h("td", {class: "num"}, secs(g.sum / g.count)),
        h("td", {class: "num"}, secs(g.max)), h("td", {class: "num"}, secs(g.sum))))));
    if (v && ENDED.has(v.status)) renderWhy(view.sid, await api(`sessions/${encodeURIComponent(view.sid)}/why`), path);
  }
  let loaded = false;
  view.update = (v, tick) => {
    if (!loaded || (tick % 5 === 4 && !ENDED.has(v.status)) || (ENDED.has(v.status) && loaded !== "ended")) {
      loaded = ENDED.has(v.status) ? "ended" : true;
      load(v).catch((e) => put(box, h("p", {class: "error"}, e.message)));
    }
  };
}

/* -- a drop -------------------------------------------------------------------------------------------- */

function linkTable(sid, title, rows, count) {
  if (!rows || !rows.length) return null;
  return [h("h2", {}, title + (count > rows.length ? ` (the first ${rows.length} of ${num(count)})` : "")),
    table(["drop", "kind", "state", "node"], rows.map((d) => h("tr", {},
      h("td", {}, h("a", {href: dropHref(sid, d.uid)}, d.uid)), h("td", {}, d.kind), h("td", {}, badge(d.state)), h("td", {}, d.node))))];
}

function pageDrop(sid, uid) {
  const box = h("div", {id: "drop"});
  put(main, h("p", {}, h("a", {href: sessionHref(sid)}, "\u2190 session " + sid)),
    h("h1", {}, uid, " ", h("span", {id: "drop-state"})), h("p", {id: "page-error", class: "error"}), box);
  poll(async () => {
    const d = await api(`sessions/${encodeURIComponent(sid)}/monitor/drop`, {uid});
    put(document.getElementById("drop-state"), badge(d.state));
    const t = d.timing || {};
    const cause = (c) => CAUSE_WORDS.has(c) || c.startsWith("node ") || c.startsWith("retry") ? c : h("a", {href: dropHref(sid, c)}, c);
    put(box,
      h("div", {class: "facts"},
        h("div", {}, h("b", {}, "kind"), d.kind), h("div", {}, h("b", {}, "node of the graph"), d.group),
        h("div", {}, h("b", {}, "node"), d.node + (d.proxy ? " (a copy of another node's drop)" : "")),
        d.name ? h("div", {}, h("b", {}, "name"), d.name) : null,
        h("div", {}, h("b", {}, "started"), when(t.started)), h("div", {}, h("b", {}, "settled"), when(t.settled)),
        t.seconds !== undefined ? h("div", {}, h("b", {}, "ran"), secs(t.seconds)) : null,
        t.running_for !== undefined ? h("div", {}, h("b", {}, "running for"), secs(t.running_for)) : null,
        t.attempts > 1 ? h("div", {}, h("b", {}, "attempts"), t.attempts) : null),
      d.error ? [h("h2", {}, "Error"), h("pre", {id: "drop-error", class: "error"}, d.error)] : null,
      h("h2", {}, "Log"),
      table(["time", "from", "to", "cause"], d.events.map((e) => h("tr", {},
        h("td", {class: "mono"}, when(e.time)), h("td", {}, e.from), h("td", {}, badge(e.to)), h("td", {}, cause(e.cause)))),
        {id: "drop-log"}),
      d.events.length ? null : h("p", {class: "muted"}, "no event of this drop is left in the node's bounded log"),
      d.stdout !== null && d.stdout !== undefined ? [h("h2", {}, "Standard output (end)"), h("pre", {id: "stdout"}, d.stdout || "(empty)")] : null,
      d.stderr !== null && d.stderr !== undefined ? [h("h2", {}, "Standard error (end)"), h("pre", {id: "stderr"}, d.stderr || "(empty)")] : null,
      d.category === "app" && (d.stdout === null || d.stdout === undefined) ?
        h("p", {class: "muted"}, "no output was captured for this app (shell commands and apps in worker processes are)") : null,
      linkTable(sid, "Inputs", d.inputs, d.input_count), linkTable(sid, "Outputs", d.outputs, d.output_count),
      linkTable(sid, "Written by", d.producers, (d.producers || []).length),
      linkTable(sid, "Read by", d.consumers, d.consumer_count));
    return !["FINISHED", "COMPLETED", "ERROR", "CANCELLED", "SKIPPED", "EXPIRED", "DELETED"].includes(d.state);
  }, 2000);
}

/* -- routing ------------------------------------------------------------------------------------------- */

function route() {
  generation++;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "session" && parts[1]) {
    loadHeader();
    if (parts[2] === "drop" && parts.length > 3) return pageDrop(parts[1], parts.slice(3).join("/"));
    return pageSession(parts[1], parts[2]);
  }
  return pageHome();
}

window.addEventListener("hashchange", route);
route();
