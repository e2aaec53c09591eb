/* Redrive job page: live progress over /ws/jobs/<id>/ (polling fallback), rate, ETA, controls. */
(function () {
  "use strict";
  var TERMINAL = ["completed", "cancelled", "failed"];
  var ACTIVE = ["pending", "running", "paused", "cancelling"];
  var LABELS = { pending: "Pending", running: "Running", paused: "Paused", cancelling: "Cancelling", cancelled: "Cancelled", completed: "Completed", failed: "Failed" };

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-job-id]");
    if (!root) return;
    var id = root.getAttribute("data-job-id");
    var status = root.getAttribute("data-status");
    var samples = [];
    var poller = null;
    var lastFailed = null;

    function set(sel, text) { var el = root.querySelector(sel); if (el) el.textContent = text; }
    function duration(seconds) {
      if (seconds < 90) return Math.max(0, Math.round(seconds)) + " s";
      if (seconds < 5400) return Math.round(seconds / 60) + " min";
      return (seconds / 3600).toFixed(1) + " h";
    }

    function apply(job, serverRate, serverEta) {
      var now = Date.now();
      samples.push([now, job.done]);
      samples = samples.filter(function (s) { return now - s[0] < 15000; });
      set("[data-percent]", Number(job.percent).toFixed(1));
      set("[data-done]", window.dlq.number(job.done));
      set("[data-total]", window.dlq.number(job.total));
      var claiming = root.querySelector("[data-claiming]");
      if (claiming) claiming.hidden = !job.claiming;
      set("[data-succeeded]", window.dlq.number(job.succeeded));
      set("[data-failed]", window.dlq.number(job.failed));
      set("[data-skipped]", window.dlq.number(job.skipped));
      var bar = root.querySelector("[data-bar]");
      if (bar) {
        bar.value = job.percent;
        bar.className = bar.className.replace(/\bst-\S+/g, "").trim() + " st-" + job.status;
      }
      var badge = root.querySelector("[data-job-status]");
      if (badge) { badge.textContent = LABELS[job.status] || job.status; badge.className = "badge st-" + job.status; }
      var rate = serverRate;
      if (samples.length > 1) {
        var first = samples[0], last = samples[samples.length - 1];
        var dt = (last[0] - first[0]) / 1000;
        if (dt > 0.5) rate = (last[1] - first[1]) / dt;
      }
      var finished = TERMINAL.indexOf(job.status) !== -1;
      if (rate != null && rate > 0) set("[data-rate]", rate.toFixed(1));
      if (finished) set("[data-eta]", "–");
      else if (rate > 0) set("[data-eta]", duration((job.total - job.done) / rate));
      else if (serverEta != null) set("[data-eta]", duration(serverEta));
      root.querySelectorAll("[data-control]").forEach(function (form) {
        var action = form.getAttribute("data-control");
        var show = (action === "pause" && (job.status === "running" || job.status === "pending")) ||
          (action === "resume" && job.status === "paused") ||
          (action === "cancel" && ACTIVE.indexOf(job.status) !== -1 && job.status !== "cancelling");
        form.hidden = !show;
      });
      var changedFailures = lastFailed !== null && (job.failed !== lastFailed);
      lastFailed = job.failed;
      if ((finished && status !== job.status) || changedFailures) refreshProblems();
      status = job.status;
      root.setAttribute("data-status", job.status);
      if (finished && poller) { clearInterval(poller); poller = null; }
    }

    function refreshProblems() {
      var url = root.getAttribute("data-problems-url");
      if (window.htmx && url) window.htmx.ajax("GET", url, { target: "#problems", swap: "innerHTML" });
    }

    function poll() {
      fetch(root.getAttribute("data-progress-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) apply(data.job, data.rate, data.eta); })
        .catch(function () {});
    }

    var note = root.querySelector("[data-live-note]");
    window.dlq.live("/ws/jobs/" + id + "/", function (event) {
      if (event.type === "job.progress" && String(event.job.id) === String(id)) apply(event.job, null, null);
    }, function (state) {
      if (state === "on") {
        if (poller) { clearInterval(poller); poller = null; }
        if (note) note.textContent = "Live over the websocket.";
        poll(); /* catch up on anything sent before the socket opened */
      } else if (!poller && TERMINAL.indexOf(status) === -1) {
        if (note) note.textContent = "Websocket unavailable: refreshing every 3 s.";
        poller = setInterval(poll, 3000);
      }
    });
  });
})();
