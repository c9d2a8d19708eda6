from edgecloud_servicekit.problems import Conflict, Forbidden, NotFound


class TenantNotFound(NotFound):
    default_code = "tenant_not_found"

    def __init__(self, tenant: str) -> None:
        super().__init__(f"tenant {tenant} not found")


class InvitationNotFound(NotFound):
    default_code = "invitation_not_found"

    def __init__(self, invitation_id: str) -> None:
        super().__init__(f"invitation {invitation_id} not found")


class MemberNotFound(NotFound):
    default_code = "member_not_found"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"member {user_id} not found")


class LastAdmin(Conflict):
    default_code = "last_admin"

    def __init__(self) -> None:
        super().__init__("a tenant keeps at least one tenant admin")


class AlreadyMember(Conflict):
    default_code = "already_member"

    def __init__(self) -> None:
        super().__init__("you are already a member of this tenant")


class RoleNotAllowed(Forbidden):
    default_code = "role_not_allowed"

    def __init__(self, role: str) -> None:
        super().__init__(f"you may not give the role {role}")
