// One node: its series grouped by source, each family one chart; day/week/month
// and custom ranges, drag to zoom, a permalink per chart; the tier follows range
// and width (the API is asked for step = range / pixels).
import { api, poll } from "./api.js";
import { makeChart, align } from "./chart.js";
import { h, replace, errorBox, ago } from "./dom.js";

const RANGES = { "1h": 3600, "1d": 86400, "1w": 7 * 86400, "30d": 30 * 86400 };
const RANGE_NAMES = { "1h": "hour", "1d": "day", "1w": "week", "30d": "month" };
const MAX_LINES = 12;
// the groups open at first (others load when opened: a node has ~40 families)
const OPEN = new Set(["cpu", "load"]);

function base(name) {
  const i = name.indexOf("{");
  return i < 0 ? name : name.slice(0, i);
}

function labelsOf(name) {
  const i = name.indexOf("{");
  return i < 0 ? "" : name.slice(i + 1, -1);
}

export function sourceOf(b) {
  const parts = b.split("_");
  if (parts[0] === "node") return (parts[1] || "node").replace(/\d+$/, "");
  if (parts[0] === "clumon") return parts[1] || "clumon";
  if (parts[0] === "sched") return "scheduler";
  return parts[0];
}

// The view's range from the URL: ?range=1w (relative, live) or ?from=&to= (fixed)
function rangeFromUrl() {
  const q = new URLSearchParams(location.search);
  const from = Number(q.get("from"));
  const to = Number(q.get("to"));
  if (from > 0 && to > from) return { from, to };
  const r = q.get("range");
  return { range: RANGES[r] ? r : "1h" };
}

function span(view) {
  if (view.range) {
    const to = Date.now() / 1000;
    return [to - RANGES[view.range], to];
  }
  return [view.from, view.to];
}

export function nodePage(main, node) {
  let view = rangeFromUrl();
  const charts = new Map(); // family -> {el, names, plot, tierEl}
  const status = h("span", { class: "muted", id: "range-label" });
  const fromIn = h("input", { type: "datetime-local", id: "custom-from" });
  const toIn = h("input", { type: "datetime-local", id: "custom-to" });

  function setView(v, push = true) {
    view = v;
    const q = new URLSearchParams();
    if (v.range) q.set("range", v.range);
    else { q.set("from", String(v.from)); q.set("to", String(v.to)); }
    if (push) history.pushState(null, "", `${location.pathname}?${q}${location.hash}`);
    refreshAll();
  }

  const buttons = h("div", { class: "ranges" },
    Object.keys(RANGES).map((r) => h("button", { "data-range": r, onclick: () => setView({ range: r }) }, RANGE_NAMES[r])),
    h("span", { class: "custom" }, fromIn, "→", toIn, h("button", {
      id: "custom-go",
      onclick: () => {
        const f = Date.parse(fromIn.value) / 1000;
        const t = Date.parse(toIn.value) / 1000;
        if (f > 0 && t > f) setView({ from: Math.floor(f), to: Math.ceil(t) });
      },
    }, "show")),
    status);
  const head = h("div", { class: "node-head" }, h("h1", {}, node), h("span", { id: "node-state", class: "pill" }));
  const groups = h("div", { id: "groups" });
  const events = h("div", { id: "node-events" });
  replace(main, head, buttons, groups, h("h2", {}, "Recent events"), events);
  poll(10000, async () => {
    try {
      const rows = await api("events", { node, since: "1w", limit: 20 });
      replace(events, rows.length ? h("table", {}, h("tbody", {}, rows.map((e) => h("tr", {},
        h("td", { title: new Date(e.ts * 1000).toLocaleString() }, ago(e.ts)),
        h("td", {}, h("span", { class: `ev ev-${e.type}` }, e.type)), h("td", { class: "wide" }, e.message)))))
        : h("p", { class: "muted" }, "no events this week"));
    } catch (e) {
      replace(events, errorBox(e));
    }
  });
  window.addEventListener("popstate", () => { view = rangeFromUrl(); refreshAll(); });

  function label() {
    const [f, t] = span(view);
    for (const b of buttons.querySelectorAll("button[data-range]")) b.classList.toggle("on", b.dataset.range === view.range);
    // the custom inputs show the range in view, ready to be edited
    const local = (s) => new Date((s - new Date().getTimezoneOffset() * 60) * 1000).toISOString().slice(0, 16);
    if (document.activeElement !== fromIn && document.activeElement !== toIn) {
      fromIn.value = local(f);
      toIn.value = local(t);
    }
    status.textContent = view.range ? `last ${RANGE_NAMES[view.range]}, live`
      : `${new Date(f * 1000).toLocaleString()} → ${new Date(t * 1000).toLocaleString()}`;
  }

  async function draw(family) {
    const c = charts.get(family);
    if (!c.open) return;
    const [since, until] = span(view);
    const width = Math.max(300, c.el.clientWidth - 4);
    const step = Math.max(1, (until - since) / width);
    const answers = await Promise.all(c.names.map((s) => api("series", {
      node, series: s, since: since.toFixed(3), until: until.toFixed(3), step: step.toFixed(3),
    }).catch((e) => ({ points: [], tier: "?", error: e }))));
    const tier = answers.find((a) => a.tier && a.tier !== "?")?.tier || "?";
    const data = align(answers);
    const points = data.slice(1).reduce((n, col) => n + col.filter((v) => v !== null).length, 0);
    c.el.dataset.tier = tier;
    c.el.dataset.points = String(points);
    c.el.dataset.since = String(Math.floor(since));
    c.el.dataset.until = String(Math.floor(until));
    c.tierEl.textContent = `tier ${tier}${points ? "" : " · no points in this range"}`;
    c.link.href = `${location.pathname}?from=${Math.floor(since)}&to=${Math.ceil(until)}#chart-${family}`;
    const labels = c.names.map((n) => labelsOf(n) || base(n));
    c.range = [since, until];
    if (c.plot && c.plot.series.length === labels.length + 1) {
      c.plot.setData(data);
    } else {
      if (c.plot) c.plot.destroy();
      c.plot = makeChart(c.box, labels, data, width, (from, to) => setView({ from, to }), () => c.range);
    }
  }

  function refreshAll() {
    label();
    for (const family of charts.keys()) draw(family).catch(console.warn);
  }

  async function build() {
    let latest;
    try {
      latest = await api("latest", { node });
    } catch (e) {
      replace(groups, errorBox(e));
      return false;
    }
    const families = new Map();
    for (const name of Object.keys(latest.values)) {
      const b = base(name);
      if (!families.has(b)) families.set(b, []);
      families.get(b).push(name);
    }
    const bySource = new Map();
    for (const [b, names] of [...families.entries()].sort()) {
      const s = sourceOf(b);
      if (!bySource.has(s)) bySource.set(s, []);
      bySource.get(s).push([b, names]);
    }
    const sections = [];
    for (const [source, fams] of bySource) {
      const grid = h("div", { class: "charts" });
      const open = OPEN.has(source);
      const det = h("details", { class: "group", "data-source": source, open }, h("summary", {}, `${source} (${fams.length})`), grid);
      for (const [family, names] of fams) {
        const tierEl = h("span", { class: "tier muted" });
        const link = h("a", { class: "permalink", title: "link to this chart with its range" }, "🔗");
        const box = h("div", { class: "plot" });
        const el = h("div", { class: "chart", id: `chart-${family}`, "data-family": family },
          h("div", { class: "chart-title" }, h("b", {}, family), " ", tierEl, " ", link,
            names.length > MAX_LINES ? h("span", { class: "muted" }, ` (first ${MAX_LINES} of ${names.length})`) : null),
          box);
        grid.append(el);
        charts.set(family, { el, box, tierEl, link, names: names.slice(0, MAX_LINES), plot: null, open, det });
      }
      det.addEventListener("toggle", () => {
        for (const [family] of fams) {
          const c = charts.get(family);
          c.open = det.open;
          if (det.open) draw(family).catch(console.warn);
        }
      });
      sections.push(det);
    }
    replace(groups, sections);
    if (location.hash) document.getElementById(location.hash.slice(1))?.closest("details")?.setAttribute("open", "");
    for (const c of charts.values()) c.open = c.det.open;
    return true;
  }

  const state = h("span");
  build().then((ok) => {
    if (!ok) return;
    refreshAll();
    poll(5000, async () => {
      const l = await api("latest", { node, series: ["__none__"] });
      const pill = document.getElementById("node-state");
      pill.textContent = l.state;
      pill.dataset.state = l.state;
      if (view.range) refreshAll();
    });
  });
  return state;
}

export { ago };
