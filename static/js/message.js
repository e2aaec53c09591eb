/* Message detail: payload view tabs (JSON / Text / Hex) and expand / collapse of the JSON tree. */
(function () {
  "use strict";
  function select(tab) {
    var list = tab.closest("[role=tablist]");
    list.querySelectorAll("[role=tab]").forEach(function (t) {
      var on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      var panel = document.getElementById(t.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    });
  }
  document.addEventListener("click", function (e) {
    var tab = e.target.closest("[role=tab]");
    if (tab) { select(tab); return; }
    var tool = e.target.closest("[data-tree]");
    if (tool) {
      var open = tool.getAttribute("data-tree") === "open";
      document.querySelectorAll(".tree details").forEach(function (d) { d.open = open; });
    }
  });
  document.addEventListener("keydown", function (e) {
    var tab = e.target.closest ? e.target.closest("[role=tab]") : null;
    if (!tab || (e.key !== "ArrowRight" && e.key !== "ArrowLeft")) return;
    var tabs = Array.prototype.slice.call(tab.closest("[role=tablist]").querySelectorAll("[role=tab]"));
    var next = tabs[(tabs.indexOf(tab) + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    select(next);
    next.focus();
    e.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[role=tab]").forEach(function (t) { t.tabIndex = t.getAttribute("aria-selected") === "true" ? 0 : -1; });
  });
})();
