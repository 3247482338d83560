// The team switcher: choosing a team opens it at once (the Switch button does the same without script).
(function () {
  "use strict";
  var form = document.getElementById("team-switch");
  if (!form) {
    return;
  }
  var select = form.querySelector("select[name=team]");
  select.addEventListener("change", function () {
    form.submit();
  });
})();
