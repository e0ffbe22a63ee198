// A time-series chart on uPlot: lines of one series family, legend toggles,
// drag to zoom (reported to the page, which changes the range of every chart).
import uPlot from "uplot";

const PALETTE = ["#58a6ff", "#f0883e", "#3fb950", "#d2a8ff", "#ff7b72", "#e3b341", "#79c0ff", "#56d364",
  "#db61a2", "#a5d6ff", "#ffa657", "#7ee787"];

// [[ts, v], ...] or [{ts, avg, ...}, ...] of several series -> uPlot's aligned columns
export function align(answers) {
  const index = new Map();
  for (const a of answers) for (const p of a.points) index.set(Array.isArray(p) ? p[0] : p.ts, 0);
  const xs = [...index.keys()].sort((a, b) => a - b);
  xs.forEach((x, i) => index.set(x, i));
  const cols = answers.map((a) => {
    const col = new Array(xs.length).fill(null);
    for (const p of a.points) {
      const [t, v] = Array.isArray(p) ? p : [p.ts, p.avg];
      col[index.get(t)] = v;
    }
    return col;
  });
  return [xs, ...cols];
}

// xRange(): the [since, until] asked for, so the axis shows the whole range even
// where the store has no points yet (and a drag maps to the right times)
export function makeChart(el, labels, data, width, onZoom, xRange) {
  const opts = {
    width,
    height: 190,
    cursor: { drag: { x: true, y: false, setScale: false } },
    select: { show: true },
    legend: { live: true },
    scales: { x: { time: true, range: () => xRange() } },
    axes: [
      { stroke: "#8b98a8", grid: { stroke: "#222b36" }, ticks: { stroke: "#222b36" } },
      { stroke: "#8b98a8", grid: { stroke: "#222b36" }, ticks: { stroke: "#222b36" }, size: 60 },
    ],
    series: [{}, ...labels.map((label, i) => ({
      label, stroke: PALETTE[i % PALETTE.length], width: 1.5, points: { show: false },
    }))],
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 4) return;
        const from = u.posToVal(u.select.left, "x");
        const to = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
        onZoom(Math.floor(from), Math.ceil(to));
      }],
    },
  };
  return new uPlot(opts, data, el);
}
