"""Why a device's login or enrolment is refused. Each maps to a WAMP error URI."""

from edgecloud_contracts import errors


class CredentialError(Exception):
    uri: str = errors.AUTH_UNKNOWN_DEVICE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownDevice(CredentialError):
    uri = errors.AUTH_UNKNOWN_DEVICE


class CredentialRevoked(CredentialError):
    uri = errors.AUTH_REVOKED


class EnrolmentInvalid(CredentialError):
    uri = errors.AUTH_ENROLMENT_INVALID


class KeyMismatch(CredentialError):
    uri = errors.AUTH_KEY_MISMATCH
