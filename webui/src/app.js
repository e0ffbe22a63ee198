// The dashboard's entry: the server tells the page who is looking and which
// pages they have (a <script id="me"> in the shell); links to the others are hidden.
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { h, replace } from "./dom.js";
import { nodePage } from "./node.js";
import { overviewPage, rackPage, eventsPage, jobsPage, utilizationPage } from "./pages.js";
import { logsPage } from "./logs.js";

const me = JSON.parse(document.getElementById("me").textContent);
const NAV = [["overview", "/", "Overview"], ["events", "/events", "Events"], ["logs", "/logs", "Logs"], ["jobs", "/jobs", "Jobs"],
  ["utilization", "/utilization", "Utilization"]];

replace(document.getElementById("nav"), NAV.filter(([p]) => me.pages.includes(p)).map(([p, href, title]) =>
  h("a", { href, class: me.page === p ? "on" : "", "data-page": p }, title)));
replace(document.getElementById("who"), `${me.name} · ${me.role.replace("legacy-", "")}`,
  me.logout ? h("a", { href: "/logout", class: "logout" }, "log out") : null);

const main = document.getElementById("main");
const pages = {
  overview: () => overviewPage(main, me),
  rack: () => rackPage(main, me, me.arg),
  node: () => nodePage(main, me.arg),
  events: () => eventsPage(main, me),
  logs: () => logsPage(main),
  jobs: () => jobsPage(main, me),
  utilization: () => utilizationPage(main, me),
  forbidden: () => replace(main, h("h1", {}, "Not for you"), h("p", { class: "error", id: "forbidden" }, me.why)),
};
(pages[me.page] || pages.overview)();
