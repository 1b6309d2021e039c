// Draws every [data-chart] (a full chart) and [data-spark] (a tile's sparkline) with uPlot,
// on load and whenever htmx puts new content in the page (a swap, a websocket push).
// Data: {"x": [epoch seconds...], "series": [{"label": "...", "values": [...]}], "unit": "..."}
(function () {
  "use strict";
  var COLORS = ["#2f5fd0", "#c23a2b", "#1f8a4c", "#b7791f", "#7a3fb0", "#0f7c8c", "#5b6576"];

  function parse(el, attr) {
    try { return JSON.parse(el.getAttribute(attr)); } catch (e) { return null; }
  }

  function empty(el, text) {
    el.textContent = text;
    el.classList.add("chart-empty");
  }

  function drawChart(el) {
    var data = parse(el, "data-chart");
    if (!data || !data.x || data.x.length < 2) { return empty(el, el.getAttribute("data-empty") || "No data in this range."); }
    var unit = data.unit || "";
    var series = [{}].concat(data.series.map(function (s, i) {
      return { label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
               value: function (u, v) { return v == null ? "–" : (+v.toPrecision(4)) + (unit ? " " + unit : ""); } };
    }));
    var opts = { width: Math.max(el.clientWidth, 300), height: +(el.getAttribute("data-height") || 240),
                 series: series, scales: { x: { time: true } },
                 axes: [{}, { size: 60, values: function (u, ticks) { return ticks.map(function (t) { return +t.toPrecision(3); }); } }] };
    new uPlot(opts, [data.x].concat(data.series.map(function (s) { return s.values; })), el);
  }

  function drawSpark(el) {
    var data = parse(el, "data-spark");
    if (!data || !data.x || data.x.length < 2) { return empty(el, "no data yet"); }
    var opts = { width: +(el.getAttribute("data-width") || 180), height: 38, legend: { show: false },
                 cursor: { show: false }, scales: { x: { time: true } },
                 axes: [{ show: false }, { show: false }],
                 series: [{}, { stroke: "#2f5fd0", fill: "rgba(47,95,208,.12)", width: 1.25 }] };
    new uPlot(opts, [data.x, data.series[0].values], el);
  }

  function draw(root) {
    if (!root.querySelectorAll) { return; }
    var nodes = Array.prototype.slice.call(root.querySelectorAll("[data-chart],[data-spark]"));
    if (root.matches && root.matches("[data-chart],[data-spark]")) { nodes.push(root); }
    nodes.forEach(function (el) {
      if (el.hasAttribute("data-drawn")) { return; }
      el.setAttribute("data-drawn", "");
      if (el.hasAttribute("data-chart")) { drawChart(el); } else { drawSpark(el); }
    });
  }

  htmx.onLoad(draw);
})();
