// Follows an incident live: every few seconds, fetch the page's live part (status, SLA clocks,
// timeline) as HTML rendered and escaped by the server, and swap it in when it changed.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.src) { return; }
  var every = parseInt(live.dataset.every || "4000", 10);
  function poll() {
    fetch(live.dataset.src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        // Signed out meanwhile (session expired or ended): reloading leads to the sign-in page.
        if (answer.status === 401) { window.location.reload(); }
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== live.innerHTML) { live.innerHTML = html; }
      })
      .catch(function () { /* offline for a moment: the next poll tries again */ })
      .then(function () { window.setTimeout(poll, every); });
  }
  window.setTimeout(poll, every);
}());
