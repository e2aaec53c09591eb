/* dlqadmin: shared helpers. No inline script anywhere: every page loads its module from here.
 * - relative times (<time data-rel>) kept fresh
 * - window.dlq.live(path, onEvent): a reconnecting websocket, with the live dot in the top bar
 * - CSRF header on every htmx request
 */
(function () {
  "use strict";

  var rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat("en", { numeric: "auto" }) : null;
  var UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];

  function relative(date) {
    var seconds = Math.round((date.getTime() - Date.now()) / 1000);
    if (!rtf) return date.toISOString();
    if (Math.abs(seconds) < 45) return "just now";
    for (var i = 0; i < UNITS.length; i++) {
      var size = UNITS[i][1];
      if (Math.abs(seconds) >= size || UNITS[i][0] === "second") {
        return rtf.format(Math.round(seconds / size), UNITS[i][0]);
      }
    }
    return "";
  }

  function refreshTimes(root) {
    var nodes = (root || document).querySelectorAll("time[data-rel]");
    for (var i = 0; i < nodes.length; i++) {
      var when = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(when.getTime())) nodes[i].textContent = relative(when);
    }
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].trim().split("=");
      if (kv[0] === name) return decodeURIComponent(kv.slice(1).join("="));
    }
    return "";
  }

  function setDot(state) {
    var dot = document.getElementById("live-dot");
    if (!dot) return;
    dot.hidden = false;
    dot.classList.toggle("on", state === "on");
    dot.classList.toggle("off", state === "off");
    dot.title = state === "on" ? "Live updates: connected" : state === "off" ? "Live updates: reconnecting" : "Live updates: connecting";
  }

  /* A websocket that reconnects with backoff. onEvent gets the parsed JSON of each message;
   * onState("on"|"off") is told when it connects or drops. */
  function live(path, onEvent, onState) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var delay = 1000;
    var socket = null;
    var closed = false;
    function connect() {
      socket = new WebSocket(scheme + location.host + path);
      socket.onopen = function () { delay = 1000; setDot("on"); if (onState) onState("on"); };
      socket.onmessage = function (msg) {
        var data;
        try { data = JSON.parse(msg.data); } catch (e) { return; }
        onEvent(data);
      };
      socket.onclose = function () {
        setDot("off");
        if (onState) onState("off");
        if (!closed) { setTimeout(connect, delay); delay = Math.min(delay * 2, 30000); }
      };
    }
    connect();
    return { close: function () { closed = true; if (socket) socket.close(); } };
  }

  function number(n) { return Number(n).toLocaleString("en-US"); }

  window.dlq = { live: live, refreshTimes: refreshTimes, number: number, cookie: cookie };

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes(document);
    setInterval(function () { refreshTimes(document); }, 30000);
  });
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = cookie("csrftoken");
  });
  document.addEventListener("htmx:afterSwap", function (event) { refreshTimes(event.target); });
})();
