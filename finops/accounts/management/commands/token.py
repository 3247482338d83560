"""`finops token create|list|revoke`: API tokens for agents, gateways and CI (SPEC.md, "Command line")."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from finops.accounts.models import ApiToken, Team, TokenScope
from finops.accounts.services import api_token_create, api_token_revoke


class Command(BaseCommand):
    help = (
        "Manage API tokens. 'create' prints the secret once, alone on the last line (only its hash is "
        "stored); 'list' shows tokens by prefix; 'revoke PREFIX' stops a token from working."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
        create = actions.add_parser("create", help="create a token and print its secret (shown once)")
        create.add_argument("--name", required=True, help="what the token is for, e.g. 'ci-ingest'")
        create.add_argument(
            "--scope",
            dest="scopes",
            action="append",
            required=True,
            choices=TokenScope.values,
            help="repeat for several scopes",
        )
        create.add_argument("--team", help="team slug the token is limited to (default: org-wide)")
        actions.add_parser("list", help="list tokens (never their secrets)")
        revoke = actions.add_parser("revoke", help="revoke a token by the prefix 'list' shows")
        revoke.add_argument("prefix", help="the token's prefix, e.g. fo_AbC1234")

    def handle(self, *args, **options) -> None:
        {"create": self.create_token, "list": self.list_tokens, "revoke": self.revoke_token}[
            options["action"]
        ](**options)

    def create_token(self, *, name: str, scopes: list[str], team: str | None, **_) -> None:
        team_object = None
        if team:
            team_object = Team.objects.filter(slug=team).first()
            if team_object is None:
                known = ", ".join(Team.objects.values_list("slug", flat=True)) or "none yet"
                raise CommandError(
                    f"unknown team {team!r} (known teams: {known}); check the slug, or create the team "
                    "in the admin (Accounts › Teams) first"
                )
        try:
            token, secret = api_token_create(name=name, scopes=scopes, team=team_object)
        except ValueError as error:
            raise CommandError(str(error)) from None
        reach = f"team {team_object.slug}" if team_object else "every team (org-wide)"
        self.stdout.write(
            f"Created API token {token.name!r} ({token.prefix}…) for {reach}, scopes: {', '.join(token.scopes)}."
        )
        self.stdout.write("This is the only time the secret is shown (only its hash is kept); store it now.")
        self.stdout.write("Send it as 'Authorization: Bearer <token>'. The token:")
        self.stdout.write(secret)

    def list_tokens(self, **_) -> None:
        tokens = ApiToken.objects.select_related("team").order_by("created_at")
        rows = [("prefix", "name", "team", "scopes", "created", "last used", "revoked")]
        for token in tokens:
            rows.append(
                (
                    token.prefix,
                    token.name,
                    token.team.slug if token.team else "(org-wide)",
                    ",".join(token.scopes),
                    f"{token.created_at:%Y-%m-%d %H:%M}",
                    f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never",
                    f"{token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "",
                )
            )
        if len(rows) == 1:
            self.stdout.write(
                "no API tokens yet; create one with: finops token create --name NAME --scope read"
            )
            return
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )

    def revoke_token(self, *, prefix: str, **_) -> None:
        matches = list(ApiToken.objects.filter(prefix__startswith=prefix).select_related("team"))
        if not matches:
            raise CommandError(f"no API token with prefix {prefix!r}; 'finops token list' shows the prefixes")
        if len(matches) > 1:
            names = ", ".join(f"{token.prefix} ({token.name})" for token in matches)
            raise CommandError(f"prefix {prefix!r} matches several tokens: {names}; give more characters")
        token = matches[0]
        already_revoked = token.revoked_at is not None
        api_token_revoke(token=token)
        if already_revoked:
            self.stdout.write(
                f"{token.prefix} ({token.name}) was already revoked at {token.revoked_at:%Y-%m-%d %H:%M} UTC."
            )
        else:
            self.stdout.write(f"Revoked {token.prefix} ({token.name}): requests with it now get 401.")
