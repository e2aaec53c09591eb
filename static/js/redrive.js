/* Redrive dialog: estimate how long the job takes at the chosen velocity. */
(function () {
  "use strict";
  function estimate() {
    var form = document.querySelector(".redrive-form");
    var out = form && form.querySelector("[data-eta]");
    var velocity = form && form.querySelector("[name=velocity]");
    if (!out || !velocity) return;
    var count = parseInt(form.getAttribute("data-redrivable"), 10) || 0;
    var v = parseFloat(velocity.value);
    if (!v || v <= 0) {
      out.textContent = "At full speed the job takes as long as the broker needs to confirm each batch.";
      return;
    }
    var seconds = Math.ceil(count / v);
    var text = seconds < 90 ? seconds + " s" : seconds < 5400 ? Math.round(seconds / 60) + " min" : (seconds / 3600).toFixed(1) + " h";
    out.textContent = "At " + v + " msg/s, " + window.dlq.number(count) + " messages take about " + text + ".";
  }
  document.addEventListener("input", function (e) { if (e.target.name === "velocity") estimate(); });
  document.addEventListener("DOMContentLoaded", estimate);
})();
