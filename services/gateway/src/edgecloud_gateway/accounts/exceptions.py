from edgecloud_servicekit.problems import Forbidden, Unauthenticated


class InvalidCredentials(Unauthenticated):
    default_code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("wrong username or password")


class TokenInvalid(Unauthenticated):
    default_code = "token_invalid"

    def __init__(self) -> None:
        super().__init__("the token is unknown, expired or revoked")


class CsrfRejected(Forbidden):
    default_code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__("missing or wrong X-CSRF-Token header")
