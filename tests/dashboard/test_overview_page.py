def test_another_teams_page_is_a_friendly_404_that_names_no_team(client, django_user_model):
    from tests.factories import MembershipFactory, TeamFactory

    TeamFactory(slug="hidden-team")
    member = MembershipFactory(team=TeamFactory(slug="mine")).user
    client.force_login(member)

    response = client.get("/", {"team": "hidden-team"})

    assert response.status_code == 404
    page = response.content.decode()
    assert "Not found" in page and "Back to the overview" in page
    assert "hidden-team" not in page
