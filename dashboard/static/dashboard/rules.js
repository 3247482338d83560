// The rule editor: show only the fields the chosen kind reads (the server ignores the others anyway).
(function () {
  "use strict";
  var data = document.getElementById("rule-kind-fields");
  var form = document.querySelector("form[data-rule-form]");
  if (!data || !form) {
    return;
  }
  var reads = JSON.parse(data.textContent);
  var kind = form.querySelector("[data-rule-kind]");
  function show() {
    var wanted = reads[kind.value] || [];
    form.querySelectorAll("[data-kind-row]").forEach(function (row) {
      row.hidden = wanted.indexOf(row.getAttribute("data-kind-row")) === -1;
    });
  }
  kind.addEventListener("change", show);
  show();
})();
