from edgecloud_servicekit.problems import NotFound, Unprocessable


class AlertRuleNotFound(NotFound):
    default_code = "alert_rule_not_found"

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"alert rule {rule_id} not found")


class InvalidAlertRule(Unprocessable):
    """The rule's fields are each valid but do not fit together (a container metric on a
    device, a threshold on a state, ...)."""

    default_code = "invalid_alert_rule"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail, fields=[field])
