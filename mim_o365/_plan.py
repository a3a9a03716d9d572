"""Pure planning: what the registration needs, from what the tenant holds. No I/O here."""

from __future__ import annotations

import re
from collections.abc import Iterable

from mim_o365._errors import ConfigurationError
from mim_o365._gateways._graph import Access
from mim_o365._wellknown import EXCHANGE_APP_ID, GRAPH_APP_ID, GRAPH_USER_READ_SCOPE_ID

MANAGED_TAG = "mim-o365"
ADOPTED_TAG = "mim-o365:adopted"
SECRET_NAME_PREFIX = "mim-o365"
DEFAULT_DISPLAY_NAME = "MIM Service mailbox client access"
MAX_SECRET_LIFETIME_DAYS = 730

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


MAILBOX_TAG_PREFIX = "mim-o365:mailbox:"


def mailbox_tag(mailbox: str) -> str:
    """The tag that marks an application as ours, for this mailbox."""
    return f"{MAILBOX_TAG_PREFIX}{mailbox.lower()}"


def mailbox_from_tags(tags: Iterable[str]) -> str | None:
    """The mailbox named by an application's ``mim-o365:mailbox:`` tag, if any."""
    for tag in tags:
        if tag.startswith(MAILBOX_TAG_PREFIX):
            return tag[len(MAILBOX_TAG_PREFIX) :]
    return None


def secret_is_ours(display_name: str | None) -> bool:
    """Whether a client secret was minted by mim-o365 (its display name says so)."""
    return (display_name or "").startswith(SECRET_NAME_PREFIX)


def check_mailbox(address: str) -> str:
    """The address, stripped; a ConfigurationError naming it when it is not an e-mail address."""
    value = address.strip()
    if not _ADDRESS.match(value):
        raise ConfigurationError(
            f"--mailbox {address!r} is not an e-mail address; give the MIM Service mailbox's "
            "primary SMTP address, for example MIMService@contoso.onmicrosoft.com"
        )
    return value


def check_lifetime(days: int) -> int:
    """Secret lifetime in days, 1..730."""
    if not 1 <= days <= MAX_SECRET_LIFETIME_DAYS:
        raise ConfigurationError(
            f"--secret-lifetime-days {days} is out of range; choose 1 to {MAX_SECRET_LIFETIME_DAYS} "
            "(180 is the default; rotate before expiry with `mim-o365 rotate`)"
        )
    return days


def desired_access(current: Access, exchange_role_id: str, *, tenant_wide: bool = True) -> Access:
    """``requiredResourceAccess`` without Graph ``User.Read`` and with Exchange ``full_access_as_app``.

    Every other entry is kept as it is (an adopted app may request more than we need). With
    ``tenant_wide=False`` (RBAC for Applications) ``full_access_as_app`` is removed instead: a
    request left there invites a tenant-wide consent that would undo the scoping.
    """
    out: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    has_exchange = False
    for resource, items in current:
        if resource.lower() == GRAPH_APP_ID:
            items = tuple(i for i in items if i != (GRAPH_USER_READ_SCOPE_ID, "Scope"))
            if not items:
                continue
        if resource.lower() == EXCHANGE_APP_ID:
            has_exchange = True
            if not tenant_wide:
                items = tuple(i for i in items if i != (exchange_role_id, "Role"))
                if not items:
                    continue
            elif (exchange_role_id, "Role") not in items:
                items = (*items, (exchange_role_id, "Role"))
        out.append((resource, items))
    if not has_exchange and tenant_wide:
        out.append((EXCHANGE_APP_ID, ((exchange_role_id, "Role"),)))
    return tuple(out)


def managed_tags(current: tuple[str, ...], mailbox: str, *, adopted: bool) -> list[str]:
    """The application's tags with ours added (others kept, order kept)."""
    wanted = [MANAGED_TAG, mailbox_tag(mailbox)] + ([ADOPTED_TAG] if adopted else [])
    return list(current) + [t for t in wanted if t not in current]
