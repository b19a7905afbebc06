// Live panels: ask every element listening for "portal-refresh" to reload every 2 s, only
// while the tab is visible (and at once when it becomes visible again). Written as a
// script rather than an hx-trigger filter so htmx can run with allowEval off under a
// strict Content-Security-Policy.
(function () {
  "use strict";
  var REFRESH_MS = 2000;

  function refresh() {
    if (document.visibilityState === "visible" && window.htmx) {
      window.htmx.trigger(document.body, "portal-refresh");
    }
  }

  setInterval(refresh, REFRESH_MS);
  document.addEventListener("visibilitychange", refresh);

  // On a phone the header's sections and the tabs are strips that scroll sideways: bring
  // the current one into view (sideways only, so a #fragment's place on the page stays).
  Array.prototype.forEach.call(document.querySelectorAll("nav.site-nav, nav.tabs"), function (strip) {
    var current = strip.querySelector("[aria-current='page']");
    if (current && strip.scrollWidth > strip.clientWidth) {
      var left = current.getBoundingClientRect().left - strip.getBoundingClientRect().left;
      strip.scrollLeft += left - (strip.clientWidth - current.offsetWidth) / 2;
    }
  });

  // A swap replaces the panel's <details>; reopen the ones the reader had open.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var open = target.querySelectorAll("details[open][id]");
    target.portalOpenDetails = Array.prototype.map.call(open, function (el) { return el.id; });
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    (target.portalOpenDetails || []).forEach(function (id) {
      var details = document.getElementById(id);
      if (details) {
        details.open = true;
      }
    });
    target.portalOpenDetails = [];
  });
})();
