/* Overview: failures chart (Chart.js, data from a json_script block), live job bars, new-failure banner. */
(function () {
  "use strict";
  var PALETTE = ["#2456c7", "#d9480f", "#2b8a3e", "#ae3ec9", "#c92a2a", "#0b7285", "#e67700", "#5c677d", "#94a3b8"];

  function label(iso, bucketHours) {
    var d = new Date(iso);
    var hh = String(d.getUTCHours()).padStart(2, "0") + ":00";
    if (bucketHours <= 1) return hh;
    var day = d.toLocaleDateString("en-GB", { weekday: "short", day: "numeric", timeZone: "UTC" });
    return day + " " + hh;
  }

  function setupChart() {
    var canvas = document.getElementById("failures-chart");
    var dataNode = document.getElementById("chart-data");
    if (!canvas || !dataNode) return;
    var all = JSON.parse(dataNode.textContent);
    var chart = null;
    var empty = document.querySelector("[data-chart-empty]");
    function show(range) {
      var data = all[range];
      var total = data.series.reduce(function (sum, s) { return sum + s.data.reduce(function (a, b) { return a + b; }, 0); }, 0);
      if (empty) empty.hidden = total > 0;
      var config = {
        labels: data.labels.map(function (l) { return label(l, data.bucket_hours); }),
        datasets: data.series.map(function (s, i) {
          return { label: s.label, data: s.data, backgroundColor: PALETTE[i % PALETTE.length], borderWidth: 0, stack: "failures" };
        })
      };
      if (!window.Chart) return;
      if (chart) { chart.data = config; chart.update(); return; }
      chart = new window.Chart(canvas, {
        type: "bar",
        data: config,
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          interaction: { mode: "index", intersect: false },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } }, tooltip: { footer: function (items) { var n = 0; items.forEach(function (i) { n += i.parsed.y; }); return "Total: " + n; } } },
          scales: { x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } }
        }
      });
    }
    document.querySelectorAll("[data-range]").forEach(function (button) {
      button.addEventListener("click", function () {
        document.querySelectorAll("[data-range]").forEach(function (b) { b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
        show(button.getAttribute("data-range"));
      });
    });
    show("24h");
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupChart();
    var fresh = 0;
    var slot = document.querySelector("[data-live-banner]");
    window.dlq.live("/ws/live/", function (event) {
      if (event.type === "job.progress") {
        var item = document.querySelector('[data-job="' + event.job.id + '"]');
        if (!item) {
          if (slot && event.job.status === "running" && !fresh) {
            slot.classList.add("show");
            slot.querySelector("[data-live-text]").textContent = "Redrive job #" + event.job.id + " is running.";
          }
          return;
        }
        var bar = item.querySelector("[data-bar]");
        if (bar) { bar.max = event.job.total || 1; bar.value = event.job.done; bar.className = "bar st-" + event.job.status; }
        var counts = item.querySelector("[data-counts]");
        if (counts) counts.textContent = window.dlq.number(event.job.done) + " / " + window.dlq.number(event.job.total);
        var badge = item.querySelector(".badge");
        if (badge) { badge.textContent = event.job.status; badge.className = "badge st-" + event.job.status; }
      } else if (event.type === "dead_letters.new" && slot) {
        fresh += Number(event.count) || 0;
        slot.classList.add("show");
        slot.querySelector("[data-live-text]").textContent = window.dlq.number(fresh) + " new failure" + (fresh === 1 ? "" : "s") + " since this page loaded.";
      }
    });
  });
})();
