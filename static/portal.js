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

// Busy buttons: while a form's request is on its way, its submit button says "Working…",
// is disabled (no double submit) and carries aria-busy="true". Plain forms are marked on
// submit (the page is replaced by the answer); htmx forms from htmx:beforeRequest until
// htmx:afterRequest, when the button is given back.
(function () {
  "use strict";
  var BUSY_LABEL = "Working…";

  function buttonOf(form, submitter) {
    if (submitter && submitter.form === form) {
      return submitter;
    }
    return form.querySelector("button[type=submit], button:not([type]), input[type=submit]");
  }

  function markBusy(button) {
    if (!button || button.getAttribute("aria-busy") === "true") {
      return;
    }
    button.portalLabel = button.tagName === "INPUT" ? button.value : button.textContent;
    button.setAttribute("aria-busy", "true");
    button.classList.add("is-busy");
    if (button.tagName === "INPUT") {
      button.value = BUSY_LABEL;
    } else {
      button.textContent = BUSY_LABEL;
    }
    // Disabled after the submit event has been handled, so the button's own name and
    // value still go with the form.
    setTimeout(function () { button.disabled = true; }, 0);
  }

  function clearBusy(button) {
    if (!button || button.getAttribute("aria-busy") !== "true") {
      return;
    }
    button.removeAttribute("aria-busy");
    button.classList.remove("is-busy");
    button.disabled = false;
    if (button.portalLabel !== undefined) {
      if (button.tagName === "INPUT") {
        button.value = button.portalLabel;
      } else {
        button.textContent = button.portalLabel;
      }
    }
  }

  function isHtmx(form) {
    return ["hx-post", "hx-get", "hx-put", "hx-patch", "hx-delete"].some(function (name) {
      return form.hasAttribute(name);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement) || isHtmx(form)) {
      return;
    }
    // A form answered in another window, or with a download, leaves this page in place:
    // it opts out with data-no-busy (and any target other than this window does too).
    if (form.hasAttribute("data-no-busy") || (form.target && form.target !== "_self")) {
      return;
    }
    if (form.noValidate || form.checkValidity()) {
      markBusy(buttonOf(form, event.submitter));
    }
  });

  // Only a form's own request (or a button's) marks its button: a fragment inside a form that
  // refreshes itself (the alert rule's summary) must not disable the button the user is
  // about to click (the input's change event fires between the press and the release).
  function busyButtonOf(elt) {
    if (elt.tagName === "BUTTON") {
      return elt;
    }
    return elt instanceof HTMLFormElement ? buttonOf(elt, null) : null;
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var button = busyButtonOf(event.detail.elt);
    if (button) {
      event.detail.portalBusy = button;
      markBusy(button);
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    clearBusy(busyButtonOf(event.detail.elt));
  });

  // A page shown again from the back/forward cache must not keep a busy button.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      Array.prototype.forEach.call(document.querySelectorAll("[aria-busy=true]"), clearBusy);
    }
  });
})();

// Copy buttons: <button type="button" data-copy="ID"> copies the value (or text) of the
// element with that id to the clipboard and says "Copied" for a few seconds; where the
// clipboard is refused (an insecure origin), it selects the text for Ctrl+C instead.
// The convention is described in portal/pages/README.md.
(function () {
  "use strict";
  var SHOWN_MS = 3000;

  function textOf(target) {
    return "value" in target && typeof target.value === "string" ? target.value : target.textContent;
  }

  function select(target) {
    if (typeof target.select === "function") {
      target.select();
      return;
    }
    var range = document.createRange();
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function say(button, text, copied) {
    if (button.portalCopyLabel === undefined) {
      button.portalCopyLabel = button.textContent;
    }
    button.textContent = text;
    button.classList.toggle("is-copied", copied);
    clearTimeout(button.portalCopyTimer);
    button.portalCopyTimer = setTimeout(function () {
      button.textContent = button.portalCopyLabel;
      button.classList.remove("is-copied");
    }, SHOWN_MS);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) {
      return;
    }
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) {
      return;
    }
    event.preventDefault();
    var text = textOf(target);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, "Copied", true); },
        function () { select(target); say(button, "Selected: press Ctrl+C", false); }
      );
    } else {
      select(target);
      say(button, "Selected: press Ctrl+C", false);
    }
  });

  // A meter page's dates count only for the "From–to dates" range: choosing a date selects
  // it, so the dates typed are the dates shown (they were silently ignored otherwise).
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "date" || !input.form) {
      return;
    }
    var range = input.form.querySelector("select[name='range']");
    if (range && input.value && range.querySelector("option[value='custom']")) {
      range.value = "custom";
    }
  });
})();
