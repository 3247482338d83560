"""Login throttled per account and per address, bearer-token guessing per address: over real HTTP."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from finops.accounts.models import AuthFailureCounter, ThrottleKind
from finops.accounts.services import api_token_create
from finops.accounts.throttling import auth_failures_prune, client_address
from tests.factories import UserFactory

PASSWORD = "a-long-test-password"
WINDOW = timedelta(minutes=15)  # FINOPS_THROTTLE_WINDOW_SECONDS default
ACCOUNT_LIMIT = 5  # FINOPS_LOGIN_FAILURES_PER_ACCOUNT default
ADDRESS_LIMIT = 20  # FINOPS_LOGIN_FAILURES_PER_ADDRESS default
TOKEN_LIMIT = 20  # FINOPS_TOKEN_FAILURES_PER_ADDRESS default


def user_with_password(username: str):
    return UserFactory(username=username, password=PASSWORD)


def log_in(client: Client, username: str, password: str, path: str = "/login/", **extra):
    return client.post(path, {"username": username, "password": password}, **extra)


def assert_throttled_login(response) -> None:
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= WINDOW.total_seconds()
    page = response.content.decode()
    assert "Too many failed logins" in page
    assert "Try again in" in page
    assert "_auth_user_id" not in response.wsgi_request.session


def move_windows_back(by: timedelta) -> None:
    """The clock moves on: every counter's window began `by` earlier."""
    for counter in AuthFailureCounter.objects.all():
        counter.window_started_at -= by
        counter.save(update_fields=["window_started_at"])


@pytest.mark.django_db
def test_five_bad_passwords_then_even_the_right_one_is_refused_with_when_to_retry():
    user_with_password("alice")
    client = Client()

    for _ in range(ACCOUNT_LIMIT):
        response = log_in(client, "alice", "wrong")
        assert response.status_code == 200
        assert "didn't match" in response.content.decode()

    assert_throttled_login(log_in(client, "alice", PASSWORD))


@pytest.mark.django_db
def test_the_window_ending_lets_the_user_in_again():
    user_with_password("alice")
    client = Client()
    for _ in range(ACCOUNT_LIMIT):
        log_in(client, "alice", "wrong")
    assert_throttled_login(log_in(client, "alice", PASSWORD))

    move_windows_back(WINDOW)

    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 302
    assert response.wsgi_request.session["_auth_user_id"] == str(response.wsgi_request.user.pk)


@pytest.mark.django_db
def test_a_success_does_not_count_and_resets_the_account():
    user_with_password("alice")
    client = Client()
    for _ in range(ACCOUNT_LIMIT - 1):
        log_in(client, "alice", "wrong")
    assert log_in(client, "alice", PASSWORD).status_code == 302
    client.post("/logout/")

    # a fresh budget of five
    for _ in range(ACCOUNT_LIMIT):
        assert log_in(client, "alice", "wrong").status_code == 200
    assert_throttled_login(log_in(client, "alice", PASSWORD))
    # the address counted four and five failures and the throttled attempt, not the success
    address = AuthFailureCounter.objects.get(kind=ThrottleKind.LOGIN_ADDRESS)
    assert address.failures == 4 + 5 + 1


@pytest.mark.django_db
def test_another_account_from_the_same_address_is_refused_past_the_address_limit():
    victims = [f"user-{index}" for index in range(ADDRESS_LIMIT // ACCOUNT_LIMIT)]
    for username in [*victims, "bob"]:
        user_with_password(username)
    client = Client()
    for username in victims:  # each account stays within its own limit
        for _ in range(ACCOUNT_LIMIT):
            assert log_in(client, username, "wrong").status_code == 200

    assert_throttled_login(log_in(client, "bob", PASSWORD))
    # from another address bob is let in
    assert log_in(Client(), "bob", PASSWORD, REMOTE_ADDR="192.0.2.7").status_code == 302


@pytest.mark.django_db
def test_the_admin_login_is_throttled_too():
    UserFactory(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    client = Client()
    for _ in range(ACCOUNT_LIMIT):
        assert log_in(client, "root", "wrong", path="/admin/login/").status_code == 200

    assert_throttled_login(log_in(client, "root", PASSWORD, path="/admin/login/"))


@pytest.mark.django_db
def test_x_forwarded_for_is_not_trusted_unless_configured(settings):
    user_with_password("bob")
    client = Client()
    for index in range(ADDRESS_LIMIT):
        log_in(client, f"nobody-{index % 7}", "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{index}")
    assert_throttled_login(log_in(client, "bob", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.200"))

    # behind a proxy that sets X-Forwarded-For, its last entry is the client
    settings.FINOPS_CLIENT_ADDRESS_HEADER = "X-Forwarded-For"
    response = log_in(client, "bob", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.201")
    assert response.status_code == 302
    assert AuthFailureCounter.objects.filter(kind=ThrottleKind.LOGIN_ADDRESS, key="198.51.100.201").exists()


@pytest.mark.django_db(transaction=True)
def test_racing_wrong_passwords_get_exactly_the_limit_of_password_checks():
    """Each process counts in PostgreSQL before checking: no race lets a sixth guess through."""
    user_with_password("alice")
    racers = 12
    barrier = threading.Barrier(racers)
    statuses: list[int] = []

    def attempt() -> None:
        try:
            barrier.wait()
            statuses.append(log_in(Client(), "alice", "wrong").status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * ACCOUNT_LIMIT + [429] * (racers - ACCOUNT_LIMIT)


def bad_bearer(client: Client, path: str, **extra):
    body = "{}" if path == "/v1/traces" else "[]"
    return client.post(
        path, body, content_type="application/json", HTTP_AUTHORIZATION="Bearer fo_guess", **extra
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/litellm", "/v1/traces"])
def test_guessing_bearer_tokens_from_one_address_is_refused_everywhere(path):
    _, secret = api_token_create(name="real", scopes=["ingest", "read"])
    client = Client()
    for _ in range(TOKEN_LIMIT):
        assert bad_bearer(client, path).status_code == 401

    for throttled_path in ["/api/v1/events", "/api/v1/litellm", "/v1/traces"]:
        response = bad_bearer(client, throttled_path)
        assert response.status_code == 429, throttled_path
        assert 0 < int(response["Retry-After"]) <= WINDOW.total_seconds()
    api = client.get("/api/v1/kpis", HTTP_AUTHORIZATION="Bearer fo_guess")
    assert api.status_code == 429
    assert api.json()["message"].startswith("Too many unknown API tokens from your address.")
    traces = bad_bearer(client, "/v1/traces")
    assert "too many unknown API tokens" in traces.json()["message"]
    # a live token from that address still works: a stale agent must not lock its neighbours out
    assert client.get("/api/v1/kpis", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    # another address may still guess
    assert bad_bearer(client, "/api/v1/events", REMOTE_ADDR="192.0.2.7").status_code == 401

    move_windows_back(WINDOW)
    assert bad_bearer(client, "/api/v1/events").status_code == 401


@pytest.mark.django_db
def test_a_known_token_counts_nothing():
    _, secret = api_token_create(name="real", scopes=["read"])
    client = Client()
    for _ in range(TOKEN_LIMIT + 5):
        assert client.get("/api/v1/kpis", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    assert not AuthFailureCounter.objects.exists()


def test_client_address_keys_ipv6_by_its_64_and_reads_no_header_by_default(rf, settings):
    settings.FINOPS_CLIENT_ADDRESS_HEADER = ""
    assert client_address(request=rf.get("/", REMOTE_ADDR="2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_address(request=rf.get("/", REMOTE_ADDR="::ffff:192.0.2.1")) == "192.0.2.1"
    spoofed = rf.get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert client_address(request=spoofed) == "192.0.2.1"
    settings.FINOPS_CLIENT_ADDRESS_HEADER = "X-Real-IP"
    assert (
        client_address(request=rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="192.0.2.5")) == "192.0.2.5"
    )


@pytest.mark.django_db
def test_prune_drops_only_counters_whose_window_ended():
    now = timezone.now()
    AuthFailureCounter.objects.create(
        kind=ThrottleKind.LOGIN_ACCOUNT, key="old", failures=3, window_started_at=now - WINDOW
    )
    AuthFailureCounter.objects.create(
        kind=ThrottleKind.LOGIN_ACCOUNT, key="current", failures=3, window_started_at=now - WINDOW / 2
    )

    assert auth_failures_prune(now=now) == 1
    assert list(AuthFailureCounter.objects.values_list("key", flat=True)) == ["current"]
