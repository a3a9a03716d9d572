from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mim_o365 import BUILTIN_CLOUDS, Cloud, ConfigurationError


@pytest.mark.parametrize("name", sorted(BUILTIN_CLOUDS))
def test_builtin_clouds_use_https_on_one_sovereign_suffix(name: str) -> None:
    cloud = Cloud.named(name)
    hosts = [
        urlsplit(u).hostname or ""
        for u in (cloud.authority, cloud.graph_endpoint, cloud.exchange_endpoint)
    ]
    suffixes = {h.rsplit(".", 1)[-1] for h in hosts}
    assert len(suffixes) == 1, (
        hosts
    )  # .com, .us or .cn: never a public-cloud host in a sovereign cloud
    assert all(
        u.startswith("https://")
        for u in (cloud.authority, cloud.graph_endpoint, cloud.exchange_endpoint)
    )
    assert cloud.graph_scope.endswith("/.default")
    assert cloud.ews_url == f"{cloud.exchange_endpoint}/EWS/Exchange.asmx"


def test_documented_hosts() -> None:
    assert (
        Cloud.named("global").token_url("t")
        == "https://login.microsoftonline.com/t/oauth2/v2.0/token"
    )
    assert Cloud.named("usgov").graph_scope == "https://graph.microsoft.us/.default"
    assert Cloud.named("usgov-dod").graph_endpoint == "https://dod-graph.microsoft.us"
    assert Cloud.named("china").exchange_scope == "https://partner.outlook.cn/.default"
    assert Cloud.named("china").instance_discovery is False


def test_unknown_cloud_lists_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="global, usgov, usgov-dod, china"):
        Cloud.named("germany")


def test_cloud_file_round_trip_with_relative_ca(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("pem")
    data = Cloud.named("global").to_dict() | {"name": "lab", "ca_file": "ca.pem"}
    (tmp_path / "cloud.json").write_text(json.dumps(data))
    cloud = Cloud.from_file(tmp_path / "cloud.json")
    assert cloud.ca_file == tmp_path / "ca.pem"
    assert cloud.name == "lab"
    assert cloud.instance_discovery is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not readable JSON"),
        ("[]", "must hold a JSON object"),
        ('{"name": "x"}', "lacks authority"),
    ],
)
def test_bad_cloud_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        Cloud.from_file(path)


def test_missing_cloud_file_and_ca(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        Cloud.from_file(tmp_path / "absent.json")
    data = Cloud.named("global").to_dict() | {"ca_file": str(tmp_path / "nope.pem")}
    with pytest.raises(ConfigurationError, match="ca_file"):
        Cloud.from_dict(data)


def test_http_endpoints_are_refused() -> None:
    data = Cloud.named("global").to_dict() | {"graph_endpoint": "http://graph.example"}
    with pytest.raises(ConfigurationError, match="graph_endpoint must be an https URL"):
        Cloud.from_dict(data)


def test_admin_consent_url_is_for_the_cloud() -> None:
    url = Cloud.named("usgov").admin_consent_url(
        "contoso.onmicrosoft.us", "abc", "https://localhost/done"
    )
    assert url.startswith(
        "https://login.microsoftonline.us/contoso.onmicrosoft.us/adminconsent?client_id=abc"
    )
    assert "redirect_uri=https%3A%2F%2Flocalhost%2Fdone" in url
