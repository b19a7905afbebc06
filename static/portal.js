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

// Copy buttons: <button type="button" data-copy="ID"> copies the value (or text) of the
// element with that id ("#ID" works too) and says "Copied" for a few seconds; where the
// clipboard is refused, it selects the text for the reader to copy. Minimal: a fuller
// version may replace it.
(function () {
  "use strict";
  function say(button, text) {
    button.portalCopyLabel = button.portalCopyLabel || button.textContent;
    button.textContent = text;
    clearTimeout(button.portalCopyTimer);
    button.portalCopyTimer = setTimeout(function () { button.textContent = button.portalCopyLabel; }, 3000);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    var id = button ? button.getAttribute("data-copy").replace(/^#/, "") : "";
    var target = id ? document.getElementById(id) : null;
    if (!target) {
      return;
    }
    event.preventDefault();
    var text = "value" in target && typeof target.value === "string" ? target.value : target.textContent;
    function selectIt(error) {
      if (typeof target.select === "function") {
        target.select();
      }
      say(button, "Selected: press Ctrl+C");
      if (error && window.console) { window.console.warn("copy refused", error); }
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say(button, "Copied"); }, selectIt);
    } else {
      selectIt(null);
    }
  });
})();
