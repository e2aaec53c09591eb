/* Messages table: row selection, "select all N matching", keyboard navigation, live banner.
 * The table never changes by itself: new failures only raise the "N new" banner (fixed slot). */
(function () {
  "use strict";

  function form() { return document.getElementById("bulk-form"); }
  function rowChecks() { var f = form(); return f ? Array.prototype.slice.call(f.querySelectorAll("[data-row-check]")) : []; }

  /* The page counts matches only up to a cap ("1,000+"). Selecting "all matching" asks the
   * server for the exact number of the pinned filter (the set the action will touch) and keeps
   * the bulk buttons disabled until it has arrived, so every confirmation names that number. */
  function exactTotal(f) { return f.getAttribute("data-total-exact") === "1"; }

  function adoptExactCount() {
    var f = form();
    if (!f || exactTotal(f)) return;
    var counted = f.querySelector("[data-count][data-exact]");
    if (!counted) return;
    f.setAttribute("data-total", counted.getAttribute("data-exact"));
    f.setAttribute("data-total-exact", "1");
    var shown = f.querySelector("[data-select-all-count]");
    if (shown) shown.textContent = window.dlq.number(counted.getAttribute("data-exact"));
  }

  function requestExactCount() {
    var f = form();
    var slot = f && f.querySelector("[data-count]");
    if (!slot || exactTotal(f) || f.hasAttribute("data-counting")) return;
    f.setAttribute("data-counting", "1");
    window.htmx.ajax("GET", f.getAttribute("data-count-url"), { target: slot, swap: "outerHTML" })
      .finally(function () {
        f.removeAttribute("data-counting");
        adoptExactCount();
        if (!exactTotal(f)) { var all = f.querySelector("[data-select-all-input]"); if (all) all.value = "0"; }
        update();  /* no number, no "all matching": the operator can ask again */
      });
  }

  function confirmations(f, n, everything) {
    f.querySelectorAll("[data-confirm-verb]").forEach(function (b) {
      var note = b.getAttribute("data-confirm-note");
      if (!everything && !note) { b.removeAttribute("hx-confirm"); return; }
      var what = everything ? "all " + window.dlq.number(n) + " message" + (n === 1 ? "" : "s") + " matching this filter"
        : "the " + window.dlq.number(n) + " selected message" + (n === 1 ? "" : "s");
      b.setAttribute("hx-confirm", b.getAttribute("data-confirm-verb") + " " + what + "?" + (note ? " " + note : ""));
    });
  }

  function update() {
    var f = form();
    if (!f) return;
    var checks = rowChecks();
    var ticked = checks.filter(function (c) { return c.checked; });
    var all = f.querySelector("[data-select-all-input]");
    var total = parseInt(f.getAttribute("data-total"), 10) || 0;
    var everything = all && all.value === "1";
    var counting = everything && !exactTotal(f);
    checks.forEach(function (c) {
      var row = c.closest("tr");
      if (row) row.classList.toggle("selected", c.checked);
    });
    var pageBox = f.querySelector("[data-check-page]");
    if (pageBox) {
      pageBox.checked = checks.length > 0 && ticked.length === checks.length;
      pageBox.indeterminate = ticked.length > 0 && ticked.length < checks.length;
    }
    var count = f.querySelector("[data-selected-count]");
    var n = everything ? (counting ? 0 : total) : ticked.length;
    if (count) count.textContent = counting ? "counting…" : n ? window.dlq.number(n) + " selected" : "none selected";
    f.querySelectorAll("[data-needs-selection]").forEach(function (b) { b.disabled = n === 0; });
    confirmations(f, n, everything);
    var pageMsg = f.querySelector("[data-select-page-msg]");
    var allMsg = f.querySelector("[data-select-all-msg]");
    var wholePage = checks.length > 0 && ticked.length === checks.length;
    if (pageMsg) pageMsg.hidden = !(wholePage && !everything && (total > checks.length || !exactTotal(f)));
    if (allMsg) allMsg.hidden = !everything;
  }

  function setEverything(on) {
    var f = form();
    var all = f && f.querySelector("[data-select-all-input]");
    if (!all) return;
    all.value = on ? "1" : "0";
    if (!on) rowChecks().forEach(function (c) { c.checked = false; });
    update();
    if (on) requestExactCount();
  }

  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches("[data-check-page]")) {
      rowChecks().forEach(function (c) { c.checked = t.checked; });
      if (!t.checked) setEverything(false);
      update();
    } else if (t.matches("[data-row-check]")) {
      if (!t.checked) { var f = form(); var all = f.querySelector("[data-select-all-input]"); if (all) all.value = "0"; }
      update();
    }
  });

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t.matches("[data-select-all]")) { setEverything(true); }
    else if (t.matches("[data-clear-selection]")) { setEverything(false); }
    else if (t.matches("[data-since]")) {
      var since = document.getElementById("filter-since");
      var filters = document.getElementById("filter-form");
      if (since && filters) {
        since.value = t.getAttribute("data-since");
        if (filters.requestSubmit) filters.requestSubmit(); else filters.submit();
      }
    }
  });

  /* keyboard: j/k move between rows, x toggles the row, / focuses the search box */
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("[data-row]")); }
  function currentRow() { var a = document.activeElement; return a ? a.closest("[data-row]") : null; }
  function focusRow(row) { var link = row && row.querySelector("[data-row-link]"); if (link) { link.focus(); row.scrollIntoView({ block: "nearest" }); } }
  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if ((tag === "input" && e.target.type !== "checkbox") || tag === "textarea" || tag === "select") return;
    var list = rows();
    var row = currentRow();
    var index = row ? list.indexOf(row) : -1;
    if (e.key === "j") { focusRow(list[Math.min(index + 1, list.length - 1)]); e.preventDefault(); }
    else if (e.key === "k") { focusRow(list[Math.max(index - 1, 0)]); e.preventDefault(); }
    else if (e.key === "x" && row) {
      var box = row.querySelector("[data-row-check]");
      if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change", { bubbles: true })); }
      e.preventDefault();
    } else if (e.key === "/") {
      var q = document.getElementById("filter-q");
      if (q) { q.focus(); q.select(); e.preventDefault(); }
    }
  });

  /* live "N new" banner */
  var fresh = 0;
  function watched() {
    var box = document.getElementById("results");
    var raw = box ? box.getAttribute("data-watch-sources") || "" : "";
    return raw ? raw.split(",").map(Number) : [];
  }
  function banner() {
    var slot = document.querySelector("[data-live-banner]");
    if (!slot) return;
    var text = slot.querySelector("[data-live-text]");
    slot.classList.toggle("show", fresh > 0);
    if (text) text.textContent = fresh ? window.dlq.number(fresh) + " new failure" + (fresh === 1 ? "" : "s") + " since this page loaded." : "";
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target && event.target.id === "results") { fresh = 0; banner(); }
    adoptExactCount();
    update();
  });

  document.addEventListener("DOMContentLoaded", function () {
    update();
    if (!document.querySelector("[data-live-banner]") && !document.getElementById("results")) return;
    window.dlq.live("/ws/live/", function (event) {
      if (event.type !== "dead_letters.new") return;
      var only = watched();
      if (only.length && only.indexOf(Number(event.source)) === -1) return;
      fresh += Number(event.count) || 0;
      banner();
    });
  });
})();
