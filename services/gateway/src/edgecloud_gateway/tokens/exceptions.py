from edgecloud_servicekit.problems import NotFound, Unauthenticated


class TokenInvalid(Unauthenticated):
    default_code = "token_invalid"

    def __init__(self) -> None:
        super().__init__("the token is unknown or revoked")


class TokenExpired(Unauthenticated):
    default_code = "token_expired"

    def __init__(self) -> None:
        super().__init__("the token has expired; sign in again")


class TokenNotFound(NotFound):
    default_code = "token_not_found"

    def __init__(self, token_id: str) -> None:
        super().__init__(f"token {token_id} not found")
