"""exchangelib is driven with each cloud's own endpoints: never the public cloud's by accident."""

from __future__ import annotations

import pytest
import requests.adapters
from exchangelib.protocol import BaseProtocol

from mim_o365 import BUILTIN_CLOUDS, Cloud, Secret
from mim_o365._gateways._ews import CloudTrustAdapter, ews_configuration

EXPECTED = {
    "global": ("https://login.microsoftonline.com", "https://outlook.office365.com"),
    "usgov": ("https://login.microsoftonline.us", "https://outlook.office365.us"),
    "usgov-dod": ("https://login.microsoftonline.us", "https://outlook-dod.office365.us"),
    "china": ("https://login.partner.microsoftonline.cn", "https://partner.outlook.cn"),
}


@pytest.mark.parametrize("name", sorted(BUILTIN_CLOUDS))
def test_token_url_scope_and_endpoint_per_cloud(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", requests.adapters.HTTPAdapter)
    login, exchange = EXPECTED[name]
    config = ews_configuration(
        Cloud.named(name), "tid-1", "app-1", Secret("s3cr3t-value-for-test"), "mim@contoso.com"
    )
    creds = config.credentials
    assert creds.token_url == f"{login}/tid-1/oauth2/v2.0/token"
    assert creds.scope == [f"{exchange}/.default"]
    assert config.service_endpoint == f"{exchange}/EWS/Exchange.asmx"
    assert "s3cr3t" not in repr(creds)
    assert BaseProtocol.HTTP_ADAPTER_CLS is CloudTrustAdapter
