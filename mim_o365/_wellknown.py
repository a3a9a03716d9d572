"""First-party application and permission identifiers (no hosts here: see ``_clouds``).

Values from Microsoft's documentation; the sources are listed in tests/conformance/well-known-ids.md.
The library never relies on a role id alone: it reads ``full_access_as_app`` from the Exchange service
principal by value and checks it against the id below.
"""

from __future__ import annotations

from typing import Final

GRAPH_APP_ID: Final = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID: Final = "00000002-0000-0ff1-ce00-000000000000"

FULL_ACCESS_AS_APP: Final = "full_access_as_app"
FULL_ACCESS_AS_APP_ID: Final = "dc890d15-9560-4a4c-9b7f-a736ec74ec40"
EXCHANGE_MANAGE_AS_APP: Final = "Exchange.ManageAsApp"
EXCHANGE_MANAGE_AS_APP_ID: Final = "dc50a0fb-09a3-484d-be87-e023b12c6440"
EWS_ACCESS_AS_USER_ALL_ID: Final = "3b5f3d61-589b-4a3c-a359-5dd4b5ee5bd5"

GRAPH_USER_READ_SCOPE_ID: Final = "e1fe6dd8-ba31-4d61-89e7-88639da4683d"
