// The import job page: polls the job's progress until it has finished. The job as the page was drawn
// comes as JSON (<script type="application/json" id="job-data">), so no inline script is needed.
(function () {
  "use strict";

  // a provider bill's unreadable rows (never quarantined): where and why, as text nodes only
  function showSkipped(rows) {
    var body = document.getElementById("job-skipped-rows");
    if (!body) {
      return;
    }
    body.replaceChildren();
    rows.forEach(function (row) {
      var line = document.createElement("tr");
      var where = document.createElement("td");
      where.textContent = row.position;
      var why = document.createElement("td");
      why.textContent = Object.keys(row.errors || {}).map(function (field) {
        return field + ": " + [].concat(row.errors[field]).join("; ");
      }).join("; ");
      line.append(where, why);
      body.append(line);
    });
    document.getElementById("job-skipped").hidden = !rows.length;
  }

  function show(job) {
    document.getElementById("job-status").textContent = job.status;
    var bar = document.getElementById("job-bar");
    bar.max = job.bytes_total || 1;
    bar.value = job.bytes_done;
    document.getElementById("job-bytes").textContent =
      job.bytes_done + " of " + job.bytes_total + " bytes, " + job.rows_read + " rows read";
    document.getElementById("job-accepted").textContent = job.accepted;
    document.getElementById("job-duplicates").textContent = job.duplicates;
    document.getElementById("job-rejected").textContent = job.rejected;
    var quarantine = document.getElementById("job-quarantine");
    if (quarantine) {
      quarantine.hidden = !job.rejected;
    }
    showSkipped(job.skipped_rows || []);
    var error = document.getElementById("job-error");
    error.textContent = job.error;
    error.hidden = !job.error;
  }

  function start() {
    var panel = document.getElementById("import-job");
    var data = document.getElementById("job-data");
    if (!panel || !data) {
      return;
    }
    var url = panel.dataset.progressUrl;

    function poll() {
      fetch(url, {credentials: "same-origin"})
        .then(function (response) { return response.json(); })
        .then(function (job) { show(job); if (!job.finished) { setTimeout(poll, 1000); } })
        .catch(function () { setTimeout(poll, 3000); });
    }

    if (!JSON.parse(data.textContent).finished) {
      poll();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
