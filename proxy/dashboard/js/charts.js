// Time-series charts drawn by uPlot (vendored, served by the gateway). Each chart
// keeps the sum of each series it plots in `data-sum-<series>`, so what is drawn
// can be checked against the API's totals.
import { h } from "./dom.js";

const HEIGHT = 220;

// series: [{key, label, color, values}]; x: unix seconds
export function timeChart(title, x, series, formatValue) {
  const plot = h("div", { class: "plot", "data-chart": title });
  for (const s of series) plot.setAttribute(`data-sum-${s.key}`, sum(s.values));
  const box = h("section", { class: "card chart" }, h("h2", {}, title), plot);
  const chart = new window.uPlot({
    width: 600,
    height: HEIGHT,
    scales: { x: { time: true } },
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
    series: [{}, ...series.map((s) => ({
      label: s.label, stroke: s.color, fill: `${s.color}22`, width: 2, points: { show: false },
      value: (u, v) => (v === null || v === undefined ? "–" : formatValue(v)),
    }))],
    axes: [{}, { size: labelWidth, values: (u, ticks) => ticks.map(formatValue) }],
  }, [x, ...series.map((s) => s.values)], plot);
  return { element: box, chart };
}

// Resize every chart with its box; returns the cleanup for when the page goes.
export function fit(charts) {
  const observer = new ResizeObserver(() => {
    for (const { element, chart } of charts) {
      const width = element.querySelector(".plot").clientWidth;
      if (width > 0 && width !== chart.width) chart.setSize({ width, height: HEIGHT });
    }
  });
  for (const { element } of charts) observer.observe(element);
  return () => {
    observer.disconnect();
    for (const { chart } of charts) chart.destroy();
  };
}

// room for the longest tick label ("$0.000060"): about 7 px a character at 12 px
const labelWidth = (u, labels) => 20 + 7 * Math.max(3, ...(labels || []).map((l) => String(l).length));

const sum = (values) => values.reduce((a, b) => a + (b || 0), 0);
