from edgecloud_servicekit.problems import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    Unauthenticated,
    Unprocessable,
)


class InvalidCredentials(Unauthenticated):
    default_code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("wrong username or password")


class CsrfRejected(Forbidden):
    default_code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__("missing or wrong X-CSRF-Token header")


class WeakPassword(Unprocessable):
    default_code = "weak_password"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the password is too weak: " + "; ".join(problems), problems=problems)


class UsernameTaken(Conflict):
    default_code = "username_taken"

    def __init__(self, username: str) -> None:
        super().__init__(f"the username {username} is taken")


class TenantTaken(Conflict):
    default_code = "tenant_taken"

    def __init__(self, name: str) -> None:
        super().__init__(f"the tenant name {name} is taken")


class RegistrationClosed(Forbidden):
    default_code = "registration_closed"

    def __init__(self) -> None:
        super().__init__("registration needs an invitation from a tenant admin")


class InvitationInvalid(BadRequest):
    default_code = "invitation_invalid"

    def __init__(self) -> None:
        # Deliberately the same for unknown, used, expired, revoked or another tenant's.
        super().__init__("the invitation is not valid")


class NotAMember(Forbidden):
    default_code = "not_a_member"

    def __init__(self, tenant: str) -> None:
        super().__init__(f"you are not a member of tenant {tenant}")


class NotASession(Forbidden):
    default_code = "not_a_session"

    def __init__(self) -> None:
        super().__init__(
            "only a signed-in session switches tenant; an API token belongs to one tenant"
        )


class WrongPassword(Forbidden):
    default_code = "wrong_password"

    def __init__(self) -> None:
        super().__init__("the current password is not right")


class UserNotFound(NotFound):
    default_code = "user_not_found"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id} not found")


class UserNotManaged(Forbidden):
    default_code = "user_not_managed"

    def __init__(self, why: str) -> None:
        super().__init__(f"only an operator may do this to this user: {why}")


class NotOnYourself(Conflict):
    default_code = "not_on_yourself"

    def __init__(self) -> None:
        super().__init__("not on your own account: change your password under your account")


class ResetInvalid(BadRequest):
    default_code = "reset_invalid"

    def __init__(self) -> None:
        # The same for unknown, used, expired or superseded.
        super().__init__("the password reset is not valid")


class TenantNameInvalid(Unprocessable):
    default_code = "tenant_name_invalid"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a tenant may not be named {name!r}: it has the shape of a tenant id", name=name
        )


class JsonRequired(Problem):
    status, default_code, title = 415, "json_required", "Unsupported media type"

    def __init__(self) -> None:
        super().__init__("send the body as JSON (Content-Type: application/json)")
