// Draws every figure the server embedded as JSON (<script type="application/json" id=...>) into the
// element whose data-figure names it. No inline scripts, so a strict CSP can forbid them.
(function () {
  "use strict";

  function drawFigures() {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    document.querySelectorAll("[data-figure]").forEach(function (target) {
      var source = document.getElementById(target.getAttribute("data-figure"));
      if (!source) {
        return;
      }
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(target, figure.data, figure.layout, figure.config || {});
    });
  }

  // a select marked data-autosubmit submits its form on change; the button beside it still works
  // without JavaScript
  function autosubmitSelects() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        select.form.submit();
      });
    });
  }

  // the agent select offers only the agents of the team chosen beside it (options carry data-teams)
  function agentsFollowTeam() {
    var teamSelect = document.getElementById("filter-team");
    var agentSelect = document.getElementById("filter-agent");
    if (!teamSelect || !agentSelect) {
      return;
    }
    function follow() {
      var team = teamSelect.value;
      Array.prototype.forEach.call(agentSelect.options, function (option) {
        var teams = (option.getAttribute("data-teams") || "").split(" ");
        option.hidden = Boolean(team) && option.value !== "" && teams.indexOf(team) === -1;
        if (option.hidden && option.selected) {
          agentSelect.value = "";
        }
      });
    }
    teamSelect.addEventListener("change", follow);
    follow();
  }

  function start() {
    autosubmitSelects();
    agentsFollowTeam();
    drawFigures();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
