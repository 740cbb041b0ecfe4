// The dashboard's only script: live refresh of [data-live-url] containers, confirmation of
// forms carrying data-confirm (with the number of jobs they change), and row selection.
// Fragments are HTML rendered (and escaped) by the server.
"use strict";

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, function (whole, name) {
    return name in values ? values[name] : whole;
  });
}

function confirmForms(root) {
  root.querySelectorAll("form[data-confirm]").forEach(function (form) {
    if (form.dataset.bound) return;
    form.dataset.bound = "1";
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var countUrl = form.dataset.countUrl;
      if (!countUrl) {
        if (window.confirm(form.dataset.confirm)) form.submit();
        return;
      }
      // How many jobs a bulk action changes is counted when asked, not on every page view.
      fetch(countUrl, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) { return response.json(); })
        .catch(function () { return { text: "an unknown number of", note: "" }; })
        .then(function (answer) {
          var values = { n: answer.text || "an unknown number of", note: answer.note || "" };
          if (window.confirm(fill(form.dataset.confirm, values))) form.submit();
        });
    });
  });
}

function selection(form) {
  function boxes() {
    return document.querySelectorAll('input[type="checkbox"][form="selection"]');
  }
  form.addEventListener("submit", function (event) {
    var button = event.submitter;
    var n = Array.prototype.filter.call(boxes(), function (b) { return b.checked; }).length;
    var label = button ? button.dataset.label : "Change";
    var message = n === 0
      ? "Select some jobs first."
      : fill(form.dataset.confirmSelected, { action: label, n: n.toLocaleString("en-US") });
    if (n === 0) {
      window.alert(message);
      event.preventDefault();
    } else if (!window.confirm(message)) {
      event.preventDefault();
    }
  });
  document.addEventListener("change", function (event) {
    if (event.target.id !== "select-all") return;
    boxes().forEach(function (b) { b.checked = event.target.checked; });
  });
}

function liveRefresh(container) {
  var url = container.dataset.liveUrl;
  var every = Math.max(1000, parseInt(container.dataset.interval, 10) || 5000);
  var busy = false;
  function tick() {
    if (busy || document.hidden) return;
    // Rows being selected stay put until acted on.
    if (container.dataset.pauseWhenChecked && container.querySelector("input:checked")) return;
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
  var chosen = document.getElementById("selection");
  if (chosen) selection(chosen);
  document.querySelectorAll("[data-live-url]").forEach(liveRefresh);
});
