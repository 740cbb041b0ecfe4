// The dashboard's only script: live refresh of [data-live-url] containers and confirmation of
// forms carrying data-confirm. Fragments are HTML rendered (and escaped) by the server.
"use strict";

function confirmForms(root) {
  root.querySelectorAll("form[data-confirm]").forEach(function (form) {
    if (form.dataset.bound) return;
    form.dataset.bound = "1";
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

function liveRefresh(container) {
  var url = container.dataset.liveUrl;
  var every = Math.max(1000, parseInt(container.dataset.interval, 10) || 5000);
  var busy = false;
  function tick() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        container.innerHTML = html;
        container.dataset.refreshed = String(Date.now());
        confirmForms(container);
      })
      .catch(function () { container.dataset.stale = "1"; })
      .finally(function () { busy = false; });
  }
  setInterval(tick, every);
}

document.addEventListener("DOMContentLoaded", function () {
  confirmForms(document);
  document.querySelectorAll("[data-live-url]").forEach(liveRefresh);
});
