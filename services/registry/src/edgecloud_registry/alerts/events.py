"""Announcing raised and cleared alerts: on ``edge.event.alert`` for live views (the
gateway passes each to its tenant only), and to the rule's webhook.

The change is committed before it is announced, so a publish lost to a router outage
loses nothing: the alert list still shows it.
"""

import logging
from collections.abc import Iterable

from edgecloud_contracts import uris
from edgecloud_servicekit.wamp import WampError, WampLink

from .schemas import Notice
from .webhooks import WebhookSender

logger = logging.getLogger(__name__)


class AlertAnnouncer:
    def __init__(self, webhooks: WebhookSender) -> None:
        self.link: WampLink | None = None
        self._webhooks = webhooks

    async def announce(self, notices: Iterable[Notice]) -> None:
        for notice in notices:
            event = notice.event
            logger.info(
                "alert %s %s: %s",
                event.id,
                event.transition.value,
                event.cleared_message or event.message,
                extra={"alert": event.id, "rule": event.rule, "tenant": event.tenant},
            )
            if notice.webhook is not None:
                self._webhooks.submit(notice)
            if self.link is None:
                continue
            try:
                await self.link.publish(uris.EVENT_ALERT, event.model_dump(mode="json"))
            except WampError as err:
                logger.warning("alert event %s not published: %s", event.id, err)
