"""Admin for people, teams and API tokens. Changing them is for admins (org role or superuser).

API tokens are created with `finops token create` (the secret is shown once, there); the admin lists
them without their digest and can revoke them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from finops.accounts.models import ApiToken, Membership, OrgRole, Team, User
from finops.accounts.services import api_token_revoke


def is_org_admin(user) -> bool:
    return bool(user.is_active and (user.is_superuser or getattr(user, "org_role", "") == OrgRole.ADMIN))


class OrgAdminsOnly:
    """Staff may look; only org admins and superusers change."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request, *args) -> bool:
        return is_org_admin(request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        return is_org_admin(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_org_admin(request.user)


def sees_every_team(user) -> bool:
    return bool(user.is_active and user.sees_every_team)


class VisibleTeamsOnly:
    """For team-owned rows in the admin: staff see only the rows of the teams they may see (the
    model's `restrict`; which fields they may change is each admin's own rule)."""

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user)

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff


class VisibleTeamListFilter(admin.RelatedFieldListFilter):
    """A `team` list filter offering only the teams the user may see (the stock one lists every team)."""

    def field_choices(self, field, request, model_admin):
        return [(team.pk, str(team)) for team in Team.objects.restrict(request.user)]


class OrgWideViewOnly:
    """People and their roles in every team: for the admin and finops roles, not for team members."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_staff and sees_every_team(request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_staff and sees_every_team(request.user)


class MembershipInline(OrgAdminsOnly, admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("team",)


class TeamMembershipInline(OrgAdminsOnly, admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    verbose_name = "member"


@admin.register(User)
class UserAdmin(OrgWideViewOnly, OrgAdminsOnly, DjangoUserAdmin):
    list_display = ("username", "email", "org_role", "is_staff", "is_active", "is_superuser")
    list_filter = ("org_role", "is_staff", "is_superuser", "is_active")
    fieldsets = (
        *DjangoUserAdmin.fieldsets[:1],
        (
            "Role",
            {"fields": ("org_role",), "description": "admin: everything; finops: every team, prices, bills"},
        ),
        *DjangoUserAdmin.fieldsets[1:],
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "org_role", "usable_password", "password1", "password2"),
            },
        ),
    )
    inlines = (MembershipInline,)

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:  # an org admin must not be able to make anyone a superuser
            readonly += ["is_superuser", "user_permissions", "groups"]
        return readonly


@admin.register(Team)
class TeamAdmin(OrgAdminsOnly, admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (TeamMembershipInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user)


@admin.register(ApiToken)
class ApiTokenAdmin(VisibleTeamsOnly, admin.ModelAdmin):
    list_display = (
        "prefix",
        "name",
        "team",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (("team", VisibleTeamListFilter), "revoked_at")
    list_select_related = ("team", "created_by")
    search_fields = ("prefix", "name")
    fields = ("name", "prefix", "team", "scopes", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields  # the digest is never shown, and nothing here is editable
    actions = ("revoke_tokens",)

    def has_add_permission(self, request) -> bool:
        return False  # created by `finops token create`, which shows the secret once

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead, so the audit trail stays

    def has_revoke_permission(self, request) -> bool:
        return is_org_admin(request.user)

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request, queryset) -> None:
        for token in queryset:
            api_token_revoke(token=token)
        messages.success(request, f"Revoked {queryset.count()} token(s); requests with them now get 401.")
