"""The filters every report page shares (date range, team, agent), read from the query string and
resolved to the scope the signed-in person may read, as the Overview reads them: an invalid date falls
back to a preset (and says so), a team or agent the person may not see is a 404."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

from django.http import Http404

from dashboard.forms import PERIODS, OverviewFilterForm, OverviewFilters, overview_filters
from finops.accounts.models import Team
from finops.kpis.selectors import Scope, agents_in_scope
from finops.kpis.series import ResolvedScope, scope_for_principal


def agent_options(*, scope: Scope, team_selected: bool) -> list[tuple[str, str, str]]:
    """(value, label, teams) of every agent the person may see. Agent names are unique per team only,
    so without a team the label says which teams share a name (picking it shows that agent in all of
    them); `teams` (space-separated slugs) lets the page offer only the chosen team's agents."""
    teams_by_name: dict[str, list[str]] = {}
    for agent in agents_in_scope(scope=scope):
        teams_by_name.setdefault(agent.name, []).append(agent.team.slug)
    return [
        (name, name if team_selected else f"{name} ({', '.join(slugs)})", " ".join(slugs))
        for name, slugs in sorted(teams_by_name.items())
    ]


def query_string_with(request, **changes) -> str:
    """This page's query string with `changes` (None removes a parameter)."""
    query = request.GET.copy()
    for name, value in changes.items():
        query.pop(name, None)
        if value is not None:
            query[name] = value
    return query.urlencode()


def period_links(request) -> list[tuple[str, str, str]]:
    """(name, label, query string) of each period preset, the page's other filters kept."""
    return [
        (name, label, query_string_with(request, period=name, start=None, end=None))
        for name, label in PERIODS.items()
    ]


@dataclass(frozen=True)
class PageFilters:
    form: OverviewFilterForm
    filters: OverviewFilters
    resolved: ResolvedScope
    team_options: list[Team]
    agent_options: list[tuple[str, str, str]]
    periods: list[tuple[str, str, str]]  # (name, label, query string) of each preset

    @property
    def visible(self) -> Scope:
        """Every team the person may see (the filters' choices), whatever the filters chose."""
        return Scope(team_ids=frozenset(option.pk for option in self.team_options))

    @property
    def window_start(self) -> datetime:
        return datetime.combine(self.filters.start, time(0), tzinfo=UTC)

    @property
    def window_end(self) -> datetime:
        return datetime.combine(self.filters.end_exclusive, time(0), tzinfo=UTC)

    def context(self) -> dict:
        """What the shared filter bar (dashboard/_scope_filters.html) and the page heading need."""
        return {
            "form": self.form,
            "filters": self.filters,
            "periods": self.periods,
            "team": self.resolved.team,
            "single_agent": self.resolved.single_agent,
            "team_options": self.team_options,
            "agent_options": self.agent_options,
        }


def page_filters(request) -> PageFilters:
    form = OverviewFilterForm(request.GET)
    filters = overview_filters(form)
    if form.has_error("team") or form.has_error("agent"):  # e.g. a NUL byte: no team or agent has that name
        raise Http404("no such team or agent")
    resolved = scope_for_principal(principal=request.user, team_slug=filters.team, agent_name=filters.agent)
    team_options = list(Team.objects.restrict(request.user))
    visible = Scope(team_ids=frozenset(option.pk for option in team_options))
    return PageFilters(
        form=form,
        filters=filters,
        resolved=resolved,
        team_options=team_options,
        agent_options=agent_options(scope=visible, team_selected=resolved.team is not None),
        periods=period_links(request),
    )
