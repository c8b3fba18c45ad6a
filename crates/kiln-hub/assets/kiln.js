// The hub's pages work without this script; with it, they update live:
// a running task's log and state (server-sent events), a pipeline's name
// preview as its form is edited, and its runs while any is queued or
// running. Served from the hub itself (the pages allow no other script).
(function () {
  "use strict";

  function liveLog() {
    var log = document.getElementById("log");
    if (!log || log.dataset.live !== "true" || !window.EventSource) return;
    var es = new EventSource(log.dataset.events + "?after=" + encodeURIComponent(log.dataset.after));
    es.addEventListener("log", function (e) { log.textContent += e.data; });
    es.addEventListener("state", function (e) {
      document.getElementById("task-state").textContent = e.data;
      if (e.data !== "FREE" && e.data !== "OPEN") es.close();
    });
  }

  function pipelinePreview() {
    var form = document.getElementById("pipeline-form"), out = document.getElementById("preview");
    if (!form || !out) return;
    var timer = null;
    function preview() {
      var d = new FormData(form), q = new URLSearchParams();
      ["target_name", "target", "source", "defines"].forEach(function (k) { q.set(k, d.get(k) || ""); });
      fetch("/pipelines/-/preview?" + q.toString())
        .then(function (r) { return r.text(); })
        .then(function (t) { out.innerHTML = t; });
    }
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(preview, 200); });
    preview();
  }

  function pipelineRuns() {
    var runs = document.getElementById("runs-body");
    if (!runs) return;
    setInterval(function () {
      if (!runs.querySelector('[data-state="queued"],[data-state="running"]')) return;
      fetch(runs.dataset.src)
        .then(function (r) { return r.text(); })
        .then(function (t) { runs.innerHTML = t; });
    }, 2000);
  }

  liveLog();
  pipelinePreview();
  pipelineRuns();
})();
