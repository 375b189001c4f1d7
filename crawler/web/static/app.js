// storywatch dashboard: refresh the developments list in place, and submit filter menus on change.
// Served from /static (Content-Security-Policy: script-src 'self'); no inline script anywhere.
(function () {
  "use strict";

  function poll(section) {
    var every = Math.max(1, Number(section.dataset.every || 15)) * 1000;
    window.setInterval(function () {
      fetch(section.dataset.poll, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            // the server escaped every value; a fragment never carries script
            section.innerHTML = html;
            section.dataset.refreshed = new Date().toISOString();
          }
        })
        .catch(function () { /* offline or restarting: try again at the next tick */ });
    }, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("developments");
    if (section && section.dataset.poll) {
      poll(section);
    }
    document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  });
})();
