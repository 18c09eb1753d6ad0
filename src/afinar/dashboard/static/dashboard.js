/* Afinar dashboard behaviour: drag and drop, confirmations, the loss chart, the streaming playground.
   Every page works without it except the live chart and streaming; no inline scripts (CSP). */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  /* --- Upload: drop a file on the zone, or pick one ------------------------------------------ */
  function initDropzones(root) {
    root.querySelectorAll("[data-dropzone]").forEach(function (zone) {
      if (zone.dataset.ready) return;
      zone.dataset.ready = "1";
      var input = zone.querySelector('input[type="file"]');
      var form = zone.closest("form");
      ["dragenter", "dragover"].forEach(function (type) {
        zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("dragging"); });
      });
      ["dragleave", "dragend"].forEach(function (type) {
        zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
      });
      zone.addEventListener("drop", function (e) {
        e.preventDefault();
        zone.classList.remove("dragging");
        if (!e.dataTransfer || !e.dataTransfer.files.length || !input) return;
        input.files = e.dataTransfer.files;
        if (form && form.requestSubmit) form.requestSubmit(); else if (form) form.submit();
      });
    });
  }

  /* --- Confirm before destructive forms ------------------------------------------------------ */
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
    }
  }, true);

  /* --- Loss chart (uPlot), fed from the job's metrics JSON until the job ends ----------------- */
  function initCharts(root) {
    root.querySelectorAll("[data-loss-chart]").forEach(function (el) {
      if (el.dataset.ready || !window.uPlot) return;
      el.dataset.ready = "1";
      var url = el.dataset.lossChart;
      var plot = null;
      var width = function () { return Math.max(260, el.clientWidth); };
      var height = function () { return window.innerWidth < 760 ? 260 : 320; };
      function draw(data) {
        var series = [data.steps, data.train_loss, data.valid_loss];
        var dpo = Array.isArray(data.reward_margin);  // a DPO job: its margin and accuracy as well
        if (dpo) series.push(data.reward_margin, data.preference_accuracy);
        el.dataset.points = String(data.steps.length);
        if (!data.steps.length) return;
        if (!plot) {
          el.textContent = "";
          var lines = [
            { label: "Step" },
            { label: dpo ? "DPO loss" : "Training loss", stroke: "#1f4fd1", width: 2, points: { show: false } },
            { label: "Validation loss", stroke: "#c2410c", width: 2, spanGaps: true, dash: [6, 4],
              points: { show: true, size: 6, fill: "#c2410c" } }
          ];
          if (dpo) {
            lines.push({ label: "Reward margin", stroke: "#15803d", width: 2, points: { show: false } },
                       { label: "Preference accuracy", stroke: "#7c3aed", width: 2, dash: [2, 3],
                         points: { show: false } });
          }
          plot = new window.uPlot({
            width: width(),
            height: height(),
            scales: { x: { time: false } },
            legend: { live: false },
            axes: [
              { label: "Step", stroke: "#4f5969", grid: { stroke: "#e4e7ec" } },
              { label: dpo ? "Loss, margin, accuracy" : "Loss", stroke: "#4f5969", grid: { stroke: "#e4e7ec" } }
            ],
            series: lines
          }, series, el);
          new ResizeObserver(function () { plot.setSize({ width: width(), height: height() }); }).observe(el);
        } else {
          plot.setData(series);
        }
      }
      function poll() {
        fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
          .then(function (data) {
            draw(data);
            if (!data.done) setTimeout(poll, 2000); else el.dataset.done = "1";
          })
          .catch(function () { setTimeout(poll, 5000); });
      }
      poll();
    });
  }

  /* --- Playground: stream both answers side by side ------------------------------------------ */
  function streamInto(side, body, out, status) {
    out.textContent = "";
    out.setAttribute("aria-busy", "true");
    status.textContent = "Generating…";
    var started = performance.now();
    return fetch("/playground/stream", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (err) {
          throw new Error(err.error || ("HTTP " + response.status));
        });
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function handle(line) {
        if (!line.trim()) return;
        var msg = JSON.parse(line);
        if (msg.type === "delta") out.textContent += msg.text;
        else if (msg.type === "error") throw new Error(msg.message);
        else if (msg.type === "done") {
          var secs = ((performance.now() - started) / 1000).toFixed(1);
          status.textContent = (msg.completion_tokens != null ? msg.completion_tokens + " tokens · " : "") + secs + " s" +
            (msg.finish_reason ? " · finish: " + msg.finish_reason : "") +
            (out.textContent && !out.textContent.trim() ? " · the answer is only blank space" : "");
          out.dataset.done = "1";
        }
      }
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { handle(buffer); return; }
          buffer += decoder.decode(chunk.value, { stream: true });
          var lines = buffer.split("\n");
          buffer = lines.pop();
          lines.forEach(handle);
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      status.textContent = "Error: " + err.message;
      out.dataset.done = "1";
    }).finally(function () {
      out.setAttribute("aria-busy", "false");
    });
  }

  function initPlayground(root) {
    root.querySelectorAll("form[data-playground]").forEach(function (form) {
      if (form.dataset.ready) return;
      form.dataset.ready = "1";
      form.querySelectorAll("[data-side-model]").forEach(function (select) {
        select.addEventListener("change", function () {
          var label = document.querySelector('[data-answer-model="' + select.dataset.sideModel + '"]');
          if (label) label.textContent = select.value;
        });
      });
      form.addEventListener("submit", function (e) {
        if (!window.fetch || !window.ReadableStream) return; /* plain POST fallback */
        e.preventDefault();
        var data = new FormData(form);
        var button = form.querySelector("[data-run]");
        if (button) button.disabled = true;
        var runs = ["left", "right"].map(function (side) {
          var out = document.querySelector('[data-answer="' + side + '"]');
          var status = document.querySelector('[data-answer-status="' + side + '"]');
          delete out.dataset.done;
          return streamInto(side, {
            model: data.get(side), prompt: data.get("prompt"), system: data.get("system"),
            max_tokens: data.get("max_tokens"), temperature: data.get("temperature")
          }, out, status);
        });
        Promise.all(runs).finally(function () { if (button) button.disabled = false; });
      });
    });
  }

  function init(root) {
    initDropzones(root);
    initCharts(root);
    initPlayground(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (e) { init(e.target); });
})();
