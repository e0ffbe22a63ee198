// The logs page: stored log lines by node glob, source and regex over a time
// window (the `logs` op), newest last; "follow" asks every 3 s for what was stored
// since the last answer (its cursor), as `clumon logs --follow` does.
import { api, poll } from "./api.js";
import { h, replace, when, errorBox } from "./dom.js";

//: lines kept on the page while following; older ones scroll out
const KEEP = 2000;

export function logsPage(main) {
  const q = new URLSearchParams(location.search);
  const node = h("input", { placeholder: "node glob (rack-1/*, node-1)", value: q.get("node") || "", id: "log-node" });
  const source = h("input", { placeholder: "source", value: q.get("source") || "", id: "log-source" });
  const grep = h("input", { placeholder: "regex", value: q.get("grep") || "", id: "log-grep", class: "wide" });
  const since = h("select", { id: "log-since" }, ["15m", "1h", "6h", "1d", "1w"].map((s) =>
    h("option", { value: s, selected: s === (q.get("since") || "1h") }, s)));
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: q.get("follow") === "1" });
  const status = h("span", { class: "muted", id: "log-status" });
  const body = h("tbody", {});
  const list = h("div", { id: "log-list" }, h("table", { class: "logs" },
    h("thead", {}, h("tr", {}, ["time", "node", "source", "line"].map((t) => h("th", {}, t)))), body));
  let lines = [];
  let cursor = 0;

  const row = (l) => h("tr", {}, h("td", { class: "nowrap" }, when(l.ts)), h("td", {}, l.node),
    h("td", {}, l.source), h("td", { class: "mono" }, l.line));
  const draw = () => {
    replace(body, lines.map(row));
    status.textContent = `${lines.length} line${lines.length === 1 ? "" : "s"}`;
  };
  const args = () => ({ node: node.value, source: source.value, grep: grep.value });

  const search = async () => {
    const p = new URLSearchParams(Object.entries({ ...args(), since: since.value, follow: follow.checked ? "1" : "" })
      .filter(([, v]) => v));
    history.replaceState(null, "", `?${p}`);
    try {
      const got = await api("logs", { ...args(), since: since.value, limit: 1000 });
      lines = got.lines;
      cursor = got.cursor;
      draw();
      if (got.truncated) status.textContent += " (the newest 1,000: narrow the search for more)";
    } catch (e) {
      lines = [];
      replace(body);
      replace(status, errorBox(e));
    }
  };
  const more = async () => {
    if (!follow.checked || cursor === 0) return;
    const got = await api("logs", { ...args(), since: since.value, after: cursor, limit: 1000 });
    cursor = got.cursor;
    if (got.lines.length) {
      lines = lines.concat(got.lines).slice(-KEEP);
      draw();
    }
  };

  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); search(); } },
    node, source, grep, since, h("label", {}, follow, " follow"), h("button", {}, "search"), status);
  follow.addEventListener("change", search);
  replace(main, h("h1", {}, "Logs"), form, list);
  search();
  poll(3000, more);
}
