// The page's little JavaScript: drag and drop for the upload, a size check before sending,
// "busy" states on forms, and the live progress of a run (server-sent events).
// Everything also works without it (plain forms; the progress page then reloads itself).
"use strict";

(function () {
  function $(selector, root) { return (root || document).querySelector(selector); }

  function formatSize(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.ceil(bytes / 1024) + " KB";
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) { return "…"; }
    if (seconds < 5) { return "a few seconds"; }
    var s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h) { return "about " + h + " h " + String(m).padStart(2, "0") + " min"; }
    if (m) { return "about " + m + " min" + (r ? " " + String(r).padStart(2, "0") + " s" : ""); }
    return "about " + r + " s";
  }

  // --- upload -----------------------------------------------------------------------------
  function setupUpload(form) {
    var input = $("#sheet-input", form), zone = $("#dropzone", form);
    var chosen = $("#chosen-file", form), error = $("#client-error", form);
    var maxBytes = Number(form.dataset.maxBytes), maxMb = form.dataset.maxMb;

    function showError(text) {
      error.textContent = text;
      error.hidden = !text;
    }
    function check() {
      var file = input.files && input.files[0];
      zone.classList.toggle("has-file", Boolean(file));
      chosen.textContent = file ? file.name + " · " + formatSize(file.size) : "";
      if (file && file.size > maxBytes) {
        showError("The file is " + formatSize(file.size) + ", larger than " + maxMb +
          " MB, the most this page accepts. Split the sheet, or run it from the command line.");
        return false;
      }
      showError("");
      return Boolean(file);
    }
    input.addEventListener("change", check);
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "dragend", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        if (check()) { form.requestSubmit(); }
      }
    });
    form.addEventListener("submit", function (event) {
      if (!input.files || !input.files.length) {
        event.preventDefault();
        showError("Choose a sheet first: drop it on the box, or click the box to pick it.");
        return;
      }
      if (!check()) { event.preventDefault(); return; }
      busy(form);
    });
  }

  function busy(form) {
    var button = $("button[type=submit]", form), note = $(".busy", form);
    if (note) { note.hidden = false; }
    // Disabled after the submit has started, so the form is still sent.
    if (button) { setTimeout(function () { button.disabled = true; }, 0); }
  }

  // --- live progress ----------------------------------------------------------------------
  var STATES = { planning: "Preparing", sending: "Sending", stopping: "Stopping",
    finished: "Finished", stopped: "Stopped", failed: "Could not run" };

  // The results sheet's order of outcomes (the contract's section 8).
  var ORDER = ["updated", "unchanged", "skipped", "would_update", "invalid", "not_found",
    "rejected", "failed", "not_sent"];

  function renderCounts(list, counts) {
    ORDER.filter(function (o) { return o in counts; }).forEach(function (outcome) {
      var item = list.querySelector('[data-outcome="' + outcome + '"]');
      if (!item) {
        item = document.createElement("li");
        item.className = "count outcome-" + outcome;
        item.dataset.outcome = outcome;
        var n = document.createElement("span"), label = document.createElement("span");
        n.className = "count-n";
        label.className = "count-label";
        label.textContent = outcome.replace(/_/g, " ");
        item.append(n, label);
        var after = Array.prototype.find.call(list.children, function (other) {
          return ORDER.indexOf(other.dataset.outcome) > ORDER.indexOf(outcome);
        });
        list.insertBefore(item, after || null);
      }
      item.dataset.count = String(counts[outcome]);
      item.querySelector(".count-n").textContent = String(counts[outcome]);
    });
  }

  function setupRun(section) {
    var url = section.dataset.events;
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url);
    source.addEventListener("progress", function (event) {
      var p = JSON.parse(event.data);
      var bar = $("#run-progress");
      bar.max = Math.max(p.total, 1);
      bar.value = p.done;
      bar.textContent = p.percent + "%";
      $("#run-done").textContent = p.done;
      $("#run-total").textContent = p.total;
      $("#run-rate").textContent = Math.round(p.rate_per_min);
      $("#run-left").textContent = p.state === "planning" ? "…" : formatDuration(p.left_s);
      var state = $("#run-state");
      state.textContent = STATES[p.state] || p.state;
      state.className = "state state-" + p.state;
      section.dataset.state = p.state;
      renderCounts($("#run-counts"), p.counts);
    });
    source.addEventListener("end", function () {
      source.close();
      window.location.reload(); // the finished page is drawn by the server
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var upload = $("#upload-form");
    if (upload) { setupUpload(upload); }
    ["#mapping-form", "#worksheet-form"].forEach(function (id) {
      var form = $(id);
      if (form) { form.addEventListener("submit", function () { busy(form); }); }
    });
    var confirm = $("#confirm-form");
    if (confirm) {
      confirm.addEventListener("submit", function () {
        var button = $("button", confirm);
        setTimeout(function () { button.disabled = true; button.textContent = "Starting…"; }, 0);
      });
    }
    var run = $("#run");
    if (run) { setupRun(run); }
  });
}());
