// The overview, rack, events, jobs and utilization pages.
import { api, poll } from "./api.js";
import { makeChart } from "./chart.js";
import { h, replace, table, pct, num, ago, when, errorBox, heat } from "./dom.js";

const STATE_ORDER = ["up", "suspect", "restarted", "down", "unreachable", "unknown"];
const nodeLink = (me, n) => (me.pages.includes("node") ? h("a", { href: `/node/${encodeURIComponent(n)}` }, n) : n);

function eventRows(me, events) {
  return table([
    { title: "when", cell: (e) => h("span", { title: when(e.ts) }, ago(e.ts)) },
    { title: "subject", cell: (e) => nodeLink(me, e.subject) },
    { title: "type", cell: (e) => h("span", { class: `ev ev-${e.type}` }, e.type) },
    { title: "message", cell: (e) => e.message, cls: "wide" },
  ], events, "no events");
}

export function overviewPage(main, me) {
  const cards = h("div", { class: "cards", id: "states" });
  const hot = h("div", { class: "hot" });
  const aggs = h("div", { id: "aggregators" });
  const events = h("div", { id: "events" });
  const alerts = h("div", { id: "alerts" });
  const sched = h("div", { id: "scheduler" });
  const stamp = h("p", { class: "muted", id: "updated" });
  const showAlerts = me.pages.includes("events");
  replace(main, h("h1", {}, "Site overview"), cards,
    showAlerts ? h("section", {}, h("h2", {}, "Firing alerts"), alerts) : null,
    sched, hot,
    h("section", {}, h("h2", {}, "Aggregators"), aggs),
    me.pages.includes("events") ? h("section", {}, h("h2", {}, "Recent events"), events) : null, stamp);

  poll(2000, async () => {
    let o;
    try {
      o = await api("overview", { top: 8, events: 12 });
    } catch (e) {
      replace(cards, errorBox(e));
      return;
    }
    const states = [...STATE_ORDER.filter((s) => s in o.states), ...Object.keys(o.states).filter((s) => !STATE_ORDER.includes(s))];
    replace(cards,
      h("div", { class: "card total" }, h("b", { "data-testid": "nodes-total" }, o.nodes), h("span", {}, "nodes")),
      states.map((s) => h("div", { class: `card st-${s}`, "data-state": s },
        h("b", { "data-testid": `state-${s}` }, o.states[s]), h("span", {}, s))));
    const hotTable = (title, key, fmt) => h("div", {}, h("h3", {}, title), table([
      { title: "node", cell: (r) => nodeLink(me, r.node) },
      { title: key, cell: (r) => h("span", { class: "bar", style: { "--v": Math.min(1, key === "load1" ? r[key] / 16 : r[key]) } }, fmt(r[key])) },
    ], o[`hottest_${key}`] || [], "–"));
    if ((o.hottest_cpu || []).length) {
      replace(hot, h("h2", {}, "Hottest nodes"), h("div", { class: "cols" },
        hotTable("CPU", "cpu", pct), hotTable("Memory", "memory", pct), hotTable("Load", "load1", (v) => num(v))));
    } else replace(hot);
    const rack = (a) => (me.pages.includes("rack") && a.aggregator !== "(root)"
      ? h("a", { href: `/rack/${encodeURIComponent(a.aggregator)}` }, a.aggregator) : a.aggregator);
    replace(aggs, table([
      { title: "aggregator", cell: rack },
      { title: "state", cell: (a) => h("span", { class: `pill st-${a.state}` }, a.state) },
      { title: "nodes up", cell: (a) => `${a.up} / ${a.nodes}` },
      { title: "avg CPU", cell: (a) => pct(a.avg_cpu) },
      { title: "avg mem", cell: (a) => pct(a.avg_memory) },
      { title: "avg load", cell: (a) => num(a.avg_load1) },
      { title: "max CPU", cell: (a) => pct(a.max_cpu) },
    ], o.aggregators || [], "no aggregators"));
    if (me.pages.includes("events")) replace(events, eventRows(me, o.events || []));
    stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
  });

  if (showAlerts) {
    poll(5000, async () => {
      try {
        const a = await api("alerts", { state: "firing" });
        replace(alerts, table([
          { title: "alert", cell: (r) => r.rule },
          { title: "severity", cell: (r) => (r.labels || {}).severity || "" },
          { title: "node", cell: (r) => ((r.labels || {}).node ? nodeLink(me, r.labels.node) : "") },
          { title: "firing since", cell: (r) => (r.fired_at ? ago(r.fired_at) : "") },
          { title: "summary", cell: (r) => (r.annotations || {}).summary || "", cls: "wide" },
        ], a.alerts.filter((r) => r.state === "firing"), "none firing"));
      } catch (e) {
        replace(alerts, h("p", { class: "muted" }, e.code === "alerts_off" ? "no alert rules on this root" : e.message));
      }
    });
  }

  poll(15000, async () => {
    let clusters;
    try { clusters = await api("cluster"); } catch (e) { return; }
    if (!clusters.length) { replace(sched); return; }
    replace(sched, h("h2", {}, "Scheduler"), clusters.map((c) => {
      const site = c.partitions[""] || Object.values(c.partitions)[0] || {};
      const figs = Object.entries(site).map(([k, v]) => {
        if (v !== null && typeof v === "object") {
          // a count by state: its total large, the non-zero states beneath
          const total = v.total ?? Object.values(v).reduce((a, b) => a + b, 0);
          const parts = Object.entries(v).filter(([s, n]) => s !== "total" && n).map(([s, n]) => `${num(n, 0)} ${s.replace("_", " ")}`);
          return h("div", { class: "card", "data-figure": k }, h("b", {}, num(total, 0)), h("span", {}, k),
            h("small", {}, parts.join(" · ") || "–"));
        }
        return h("div", { class: "card", "data-figure": k }, h("b", {}, pct(v)), h("span", {}, k.replace("_", " ")));
      });
      return h("div", {}, h("h3", {}, c.cluster, c.stale ? " (stale)" : ""), h("div", { class: "cards" }, figs));
    }));
  });
}

export function rackPage(main, me, name) {
  let metric = new URLSearchParams(location.search).get("metric") || "cpu";
  const grid = h("div", { class: "heat", id: "heat" });
  const info = h("p", { class: "muted" });
  const pick = h("div", { class: "ranges" }, ["cpu", "memory", "load1"].map((m) => h("button", {
    "data-metric": m, class: m === metric ? "on" : "",
    onclick: () => {
      metric = m;
      history.replaceState(null, "", `?metric=${m}`);
      for (const b of pick.querySelectorAll("button")) b.classList.toggle("on", b.dataset.metric === m);
      render();
    },
  }, m === "load1" ? "load" : m)));
  const trends = h("div", { class: "charts", id: "rack-trends" });
  replace(main, h("h1", {}, `Rack ${name}`), pick, grid, info, h("h2", {}, "Last day (rollups, mean and max of its nodes)"), trends);
  rackTrends(trends, name);
  let last = null;
  function render() {
    if (!last) return;
    const nodes = last.nodes;
    const maxLoad = Math.max(1, ...nodes.map((n) => n.load1 || 0));
    replace(grid, nodes.map((n) => {
      const v = n[metric];
      const scaled = metric === "load1" ? (v === null ? null : v / maxLoad) : v;
      const text = metric === "load1" ? num(v) : pct(v);
      return h("a", {
        class: `cell st-${n.state}`, href: `/node/${encodeURIComponent(n.node)}`, "data-node": n.node, "data-state": n.state,
        style: { background: n.state === "up" ? heat(scaled) : undefined },
        title: `${n.node}: ${n.state}, CPU ${pct(n.cpu)}, memory ${pct(n.memory)}, load ${num(n.load1)}`,
      }, h("span", { class: "cell-name" }, n.node), h("span", { class: "cell-val" }, n.state === "up" ? text : n.state));
    }));
    const up = nodes.filter((n) => n.state === "up").length;
    info.textContent = `${up} of ${nodes.length} nodes up · updated ${new Date().toLocaleTimeString()}`;
  }
  poll(3000, async () => {
    try {
      last = await api("grid", { aggregator: name });
      render();
    } catch (e) {
      replace(grid, errorBox(e));
    }
  });
}

export function eventsPage(main, me) {
  const q = new URLSearchParams(location.search);
  const node = h("input", { placeholder: "node", value: q.get("node") || "", id: "ev-node" });
  const kind = h("input", { placeholder: "type (state, alert, audit …)", value: q.get("kind") || "", id: "ev-kind" });
  const since = h("select", { id: "ev-since" }, ["1h", "1d", "1w", "30d"].map((s) => h("option", { value: s, selected: s === (q.get("since") || "1d") }, s)));
  const list = h("div", { id: "event-list" });
  let refresh = () => {};
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } }, node, kind, since, h("button", {}, "filter"));
  replace(main, h("h1", {}, "Events"), form, list);
  refresh = async () => {
    const p = new URLSearchParams();
    if (node.value) p.set("node", node.value);
    if (kind.value) p.set("kind", kind.value);
    p.set("since", since.value);
    history.replaceState(null, "", `?${p}`);
    try {
      replace(list, eventRows(me, await api("events", { node: node.value, kind: kind.value, since: since.value, limit: 300 })));
    } catch (e) {
      replace(list, errorBox(e));
    }
  };
  poll(5000, refresh);
}

export function jobsPage(main, me) {
  const user = h("input", { placeholder: "user", id: "job-user" });
  const state = h("select", { id: "job-state" }, ["", "running", "pending", "suspended", "finished"].map((s) => h("option", { value: s }, s || "any state")));
  const list = h("div", { id: "job-list" });
  let refresh = () => {};
  replace(main, h("h1", {}, "Jobs"), h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } },
    user, state, h("button", {}, "filter")), list);
  refresh = async () => {
    try {
      const jobs = await api("jobs", { user: user.value, state: state.value, limit: 300 });
      replace(list, table([
        { title: "cluster", cell: (j) => j.cluster },
        { title: "id", cell: (j) => j.id },
        { title: "user", cell: (j) => j.user },
        { title: "account", cell: (j) => j.account },
        { title: "state", cell: (j) => h("span", { class: `pill job-${j.state}` }, j.state) },
        { title: "cores", cell: (j) => j.cores },
        { title: "nodes", cell: (j) => j.nodes.slice(0, 6).map((n, i) => [i ? ", " : "", nodeLink(me, n)]).flat().concat(j.nodes.length > 6 ? [` +${j.nodes.length - 6}`] : []), cls: "wide" },
        { title: "started", cell: (j) => when(j.start_time) },
        { title: "ended", cell: (j) => when(j.end_time) },
      ], jobs, "no jobs stored (the scheduler source sends them)"));
    } catch (e) {
      replace(list, errorBox(e));
    }
  };
  poll(10000, refresh);
}

export function utilizationPage(main) {
  const q = new URLSearchParams(location.search);
  let by = q.get("by") === "month" ? "month" : "day";
  const body = h("div", { id: "util" });
  const pick = h("div", { class: "ranges" }, ["day", "month"].map((b) => h("button", {
    "data-by": b, class: b === by ? "on" : "",
    onclick: () => {
      by = b;
      history.replaceState(null, "", `?by=${b}`);
      for (const x of pick.querySelectorAll("button")) x.classList.toggle("on", x.dataset.by === b);
      load();
    },
  }, b === "day" ? "daily (30 days)" : "monthly (6 months)")));
  replace(main, h("h1", {}, "Utilization"), pick, body);
  async function load() {
    let u;
    try {
      u = await api("utilization", { by, since: by === "day" ? "30d" : "183d", top: 30 });
    } catch (e) {
      replace(body, errorBox(e));
      return;
    }
    replace(body,
      u.clusters.length ? u.clusters.map((c) => h("section", { "data-cluster": c.cluster }, h("h2", {}, `${c.cluster} (tier ${c.tier})`),
        utilChart(c), table([
        { title: by, cell: (p) => p.period },
        { title: "utilization", cell: (p) => h("span", { class: "bar", style: { "--v": p.utilization || 0 } }, pct(p.utilization)) },
        { title: "occupancy", cell: (p) => pct(p.occupancy) },
        { title: "powered on", cell: (p) => pct(p.power_on) },
        { title: "hours", cell: (p) => num(p.hours, 1) },
        ...Object.keys(c.periods[0] || {}).filter((k) => k.startsWith("core_hours")).map((k) => ({ title: k.replace(/_/g, " "), cell: (p) => num(p[k], 0) })),
      ], c.periods, "no figures in this period"))) : h("p", { class: "muted" }, "no scheduler figures stored yet"),
      h("section", {}, h("h2", {}, "Core-hours by user"), table([
        { title: "cluster", cell: (r) => r.cluster },
        { title: "user", cell: (r) => r.user },
        { title: "core-hours", cell: (r) => num(r.core_hours, 1) },
        { title: "jobs", cell: (r) => r.jobs },
      ], u.users || [], "no jobs in this period")),
      h("section", {}, h("h2", {}, "Core-hours by account"), table([
        { title: "cluster", cell: (r) => r.cluster },
        { title: "account", cell: (r) => r.account },
        { title: "core-hours", cell: (r) => num(r.core_hours, 1) },
        { title: "jobs", cell: (r) => r.jobs },
      ], u.accounts || [], "no jobs in this period")));
  }
  load();
}

// A rack's day: the summary op's per-aggregator rollups of load and memory
const TRENDS = [["node_load1", "load"], ["node_memory_used_ratio", "memory used"]];

function rackTrends(box, name) {
  const plots = new Map();
  poll(30000, async () => {
    const until = Date.now() / 1000;
    const since = until - 86400;
    for (const [series, title] of TRENDS) {
      let s;
      try {
        s = await api("summary", { series, by: "aggregator", since: since.toFixed(0), until: until.toFixed(0) });
      } catch (e) {
        continue;
      }
      const g = s.groups[name];
      let entry = plots.get(series);
      if (!entry) {
        const el = h("div", { class: "chart", "data-series": series }, h("div", { class: "chart-title" }, h("b", {}, title), " ",
          h("span", { class: "tier muted" })), h("div", { class: "plot" }));
        box.append(el);
        entry = { el, plot: null };
        plots.set(series, entry);
      }
      const pts = g ? g.points : [];
      const data = [pts.map((p) => p.ts), pts.map((p) => p.avg), pts.map((p) => p.max)];
      entry.el.querySelector(".tier").textContent = `tier ${s.tier}${pts.length ? "" : " · no rollups yet"}`;
      entry.el.dataset.points = String(pts.length);
      if (entry.plot) entry.plot.setData(data);
      else entry.plot = makeChart(entry.el.querySelector(".plot"), ["mean", "max"], data,
        Math.max(300, entry.el.clientWidth - 4), () => {}, () => [since, until]);
    }
  });
}

// A cluster's periods on a chart: utilization, occupancy and power-on rate per day or month
function utilChart(c) {
  const rows = c.periods.filter((p) => !Number.isNaN(Date.parse(p.period)));
  if (!rows.length) return null;
  const box = h("div", { class: "chart util-chart", "data-points": String(rows.length) }, h("div", { class: "plot" }));
  const xs = rows.map((p) => Date.parse(p.period) / 1000);
  const data = [xs, ...["utilization", "occupancy", "power_on"].map((k) => rows.map((p) => p[k]))];
  const span = xs.length > 1 ? (xs[xs.length - 1] - xs[0]) / (xs.length - 1) : 86400;
  // drawn once the box is in the page and has a width
  requestAnimationFrame(() => makeChart(box.querySelector(".plot"), ["utilization", "occupancy", "powered on"], data,
    Math.max(300, Math.min(900, box.clientWidth - 4)), () => {}, () => [xs[0] - span / 2, xs[xs.length - 1] + span / 2]));
  return box;
}
