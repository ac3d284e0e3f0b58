// The usage page's charts: requests and spend per day, a bar per API,
// drawn by Plotly (served by the portal itself) from the page's own data
// (a JSON block the server wrote; the tables beside them give the exact numbers).
"use strict";
(function () {
  const island = document.getElementById("usage-data");
  if (!island || typeof Plotly === "undefined") return;
  const data = JSON.parse(island.textContent);
  const layout = (title, axis) => ({
    title: { text: title, font: { size: 15 } },
    barmode: "stack",
    margin: { t: 40, r: 10, b: 50, l: 60 },
    xaxis: { type: "category", title: { text: "Day (UTC)" } },
    yaxis: { title: { text: axis }, rangemode: "tozero" },
    legend: { orientation: "h", y: -0.25 },
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
  });
  // No mode bar: its icons are links without text, and the tables carry the numbers.
  const config = { displayModeBar: false, responsive: true };
  const bars = (field, hover) => data.series.map((s) => ({
    type: "bar", name: s.api, x: data.days, y: s[field], hovertemplate: hover,
  }));
  Plotly.newPlot("chart-requests", bars("requests", "%{x}: %{y} requests<extra>%{fullData.name}</extra>"),
    layout("Requests per day", "Requests"), config);
  Plotly.newPlot("chart-spend", bars("cost_usd", "%{x}: $%{y}<extra>%{fullData.name}</extra>"),
    layout("Spend per day", "USD"), config);
})();
