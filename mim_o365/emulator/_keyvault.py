"""The Key Vault backend: vaults, access policies and versioned, soft-deletable secrets.

No HTTP here. Errors are :class:`EmulatorError` with Key Vault's status, code and message; an
``innererror`` travels as the first entry of ``details``. Secret values live in
:class:`DirectoryState` (persisted owner-only) and appear in no message and no log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from mim_o365.emulator import _seed
from mim_o365.emulator._errors import EmulatorError
from mim_o365.emulator._ids import IdSource
from mim_o365.emulator._models import (
    DirectoryState,
    ServicePrincipal,
    Vault,
    VaultSecret,
    VaultSecretVersion,
)

SECRET_PERMISSIONS: Final = (
    "get",
    "list",
    "set",
    "delete",
    "recover",
    "backup",
    "restore",
    "purge",
)
RECOVERABLE_DAYS: Final = 90
RECOVERY_LEVEL: Final = "Recoverable+Purgeable"
MAX_VALUE_BYTES: Final = 25 * 1024
MAX_TAGS: Final = 15

VAULT_NAME_RE: Final = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
SECRET_NAME_RE: Final = re.compile(r"^[0-9a-zA-Z-]{1,127}$")

_NOT_FOUND_HINT = (
    "If you recently deleted this secret you may be able to recover it using the correct "
    "recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)


def bad_parameter(message: str) -> EmulatorError:
    """Key Vault's 400."""
    return EmulatorError(400, "BadParameter", message)


def secret_not_found(name: str, version: str | None = None) -> EmulatorError:
    """Key Vault's 404 for a secret (or version) it does not hold."""
    ident = f"{name}/{version}" if version else name
    return EmulatorError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {ident} was not found in this key vault. {_NOT_FOUND_HINT}",
    )


class KeyVaults:
    """Key Vault operations on one tenant's state (callers hold the directory lock)."""

    def __init__(self, state: DirectoryState, ids: IdSource, now: Callable[[], datetime]) -> None:
        self.state = state
        self.ids = ids
        self._now = now

    # --- vaults and access ----------------------------------------------------------------

    def seed(self) -> None:
        """Give a tenant without vaults (new, or persisted before vaults existed) its vault.

        The automation admin's service principal and the interactive admin may use every secret.
        A tenant persisted before Key Vault existed also gets the Azure Key Vault service
        principal, without which the token endpoint knows no ``https://vault.azure.net``.
        """
        self._ensure_service_principal()
        if self.state.vaults:
            return
        principals: list[str] = []
        admin_app = self.state.admin_client_id.lower()
        principals += [
            sp.id for sp in self.state.service_principals.values() if sp.app_id == admin_app
        ]
        admin_upn = f"{_seed.ADMIN_USER}@{self.state.tenant.initial_domain}".lower()
        principals += [
            u.id for u in self.state.users.values() if u.user_principal_name.lower() == admin_upn
        ]
        self.create_vault(_seed.VAULT_NAME, principals)

    def _ensure_service_principal(self) -> None:
        if any(sp.app_id == _seed.KEYVAULT_APP_ID for sp in self.state.service_principals.values()):
            return
        fp = next(f for f in _seed.FIRST_PARTY if f.app_id == _seed.KEYVAULT_APP_ID)
        scopes = [
            {
                "adminConsentDescription": f"Allows the app to use {v} as the signed-in user.",
                "adminConsentDisplayName": v,
                "id": i,
                "isEnabled": True,
                "type": "Admin",
                "userConsentDescription": None,
                "userConsentDisplayName": None,
                "value": v,
            }
            for v, i in fp.scopes.items()
        ]
        sp = ServicePrincipal(
            id=self.ids.guid(),
            app_id=fp.app_id,
            display_name=fp.display_name,
            created=self._now(),
            app_owner_organization_id="f8cdef31-a31e-4b4a-93e4-5f571e91255a",
            oauth2_permission_scopes=scopes,
            service_principal_names=list(fp.names),
        )
        self.state.service_principals[sp.id] = sp

    def create_vault(self, name: str, principals: Iterable[str] = ()) -> Vault:
        """A new, empty vault whose ``principals`` (object ids) hold every secret permission.

        Raises:
            ValueError: the name breaks Key Vault's naming rules or is taken.
        """
        if not VAULT_NAME_RE.match(name):
            raise ValueError(
                f"vault name {name!r}: 3-24 characters, letters, digits and single hyphens, "
                "starting with a letter and ending with a letter or digit"
            )
        if name.lower() in self.state.vaults:
            raise ValueError(f"vault {name!r} already exists")
        vault = Vault(name=name, created=self._now())
        self.state.vaults[name.lower()] = vault
        for object_id in principals:
            self.grant(name, object_id)
        return vault

    def grant(
        self, vault: str, object_id: str, permissions: Iterable[str] = SECRET_PERMISSIONS
    ) -> None:
        """Set the access policy of ``object_id`` on ``vault`` to ``permissions`` (secrets)."""
        wanted = [p.lower() for p in permissions]
        unknown = sorted(set(wanted) - set(SECRET_PERMISSIONS))
        if unknown:
            raise ValueError(
                f"unknown secret permissions {unknown}; choose from {SECRET_PERMISSIONS}"
            )
        self.vault(vault).access[object_id.lower()] = [p for p in SECRET_PERMISSIONS if p in wanted]

    def revoke(self, vault: str, object_id: str) -> None:
        """Remove ``object_id``'s access policy from ``vault``."""
        self.vault(vault).access.pop(object_id.lower(), None)

    def find(self, name: str) -> Vault | None:
        """The vault called ``name`` (case-insensitive), or None."""
        return self.state.vaults.get(name.lower())

    def vault(self, name: str) -> Vault:
        """The vault called ``name``; 404 ``VaultNotFound`` otherwise (Key Vault: a DNS failure)."""
        vault = self.find(name)
        if vault is None:
            raise EmulatorError(
                404, "VaultNotFound", f"No vault named '{name}' exists in this emulated tenant."
            )
        return vault

    def allowed(self, vault: Vault, object_id: str, permission: str) -> bool:
        """Whether ``object_id``'s access policy on ``vault`` includes ``permission``."""
        return permission in vault.access.get(object_id.lower(), ())

    def require(
        self, vault: Vault, object_id: str, permission: str, *, app_id: str, issuer: str
    ) -> None:
        """403 Forbidden/AccessDenied unless the caller's access policy holds ``permission``."""
        if self.allowed(vault, object_id, permission):
            return
        raise EmulatorError(
            403,
            "Forbidden",
            f"The user, group or application 'appid={app_id};oid={object_id};iss={issuer}' does "
            f"not have secrets {permission} permission on key vault '{vault.name};location=emulator'. "
            "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
            details=[{"code": "AccessDenied"}],
        )

    # --- secrets --------------------------------------------------------------------------

    @staticmethod
    def check_name(name: str) -> None:
        """400 unless ``name`` is a valid secret name."""
        if not SECRET_NAME_RE.match(name):
            raise bad_parameter(
                f"The request URI contains an invalid name: {name}. Secret names may contain only "
                "letters, digits and hyphens (1-127 characters)."
            )

    def _live(self, vault: Vault, name: str) -> VaultSecret:
        self.check_name(name)
        secret = vault.secrets.get(name.lower())
        if secret is None or secret.deleted is not None or not secret.versions:
            raise secret_not_found(name)
        return secret

    def set_secret(
        self,
        vault: Vault,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        enabled: bool = True,
        expires: datetime | None = None,
        not_before: datetime | None = None,
        tags: Mapping[Any, Any] | None = None,
    ) -> tuple[VaultSecret, VaultSecretVersion]:
        """Add a new version of ``name`` (creating the secret); 409 while it is soft-deleted."""
        self.check_name(name)
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            raise bad_parameter("The secret value exceeds the maximum allowed size of 25 KB.")
        tag_map = self.check_tags(tags)
        secret = vault.secrets.get(name.lower())
        if secret is not None and secret.deleted is not None:
            raise EmulatorError(
                409,
                "Conflict",
                f"Secret {secret.name} is currently in a deleted but recoverable state, and its "
                "name cannot be reused; in this state, the secret can only be recovered or purged.",
                details=[{"code": "ObjectIsDeletedButRecoverable"}],
            )
        if secret is None:
            secret = VaultSecret(name=name)
            vault.secrets[name.lower()] = secret
        now = self._now()
        version = VaultSecretVersion(
            version=self.ids.guid().replace("-", ""),
            value=value,
            created=now,
            updated=now,
            enabled=enabled,
            content_type=content_type,
            expires=expires,
            not_before=not_before,
            tags=tag_map,
        )
        secret.versions.append(version)
        return secret, version

    @staticmethod
    def check_tags(tags: Mapping[Any, Any] | None) -> dict[str, str]:
        """Validated tags (at most 15, string keys and values)."""
        if tags is None:
            return {}
        if len(tags) > MAX_TAGS:
            raise bad_parameter(f"A secret may have at most {MAX_TAGS} tags.")
        for key, value in tags.items():
            if not isinstance(key, str) or not isinstance(value, str) or not key:
                raise bad_parameter("Tags must map non-empty string names to string values.")
            if len(key) > 512 or len(value) > 256:
                raise bad_parameter("Tag names are limited to 512 and values to 256 characters.")
        return {str(k): str(v) for k, v in tags.items()}

    def get_secret(
        self, vault: Vault, name: str, version: str | None = None
    ) -> tuple[VaultSecret, VaultSecretVersion]:
        """The current version of ``name`` (the newest), or ``version``; 404 when absent."""
        secret = self._live(vault, name)
        if not version:
            return secret, secret.versions[-1]
        found = next((v for v in secret.versions if v.version == version.lower()), None)
        if found is None:
            raise secret_not_found(name, version)
        return secret, found

    def versions(self, vault: Vault, name: str) -> tuple[VaultSecret, list[VaultSecretVersion]]:
        """Every version of ``name``, oldest first."""
        secret = self._live(vault, name)
        return secret, list(secret.versions)

    def secrets(self, vault: Vault) -> list[tuple[VaultSecret, VaultSecretVersion]]:
        """Each live secret with its current version, by name."""
        live = [s for s in vault.secrets.values() if s.deleted is None and s.versions]
        return [(s, s.versions[-1]) for s in sorted(live, key=lambda s: s.name.lower())]

    def delete_secret(self, vault: Vault, name: str) -> VaultSecret:
        """Soft-delete ``name`` (all its versions): recoverable for 90 days."""
        secret = self._live(vault, name)
        now = self._now()
        secret.deleted = now
        secret.scheduled_purge = now + timedelta(days=RECOVERABLE_DAYS)
        return secret

    def _deleted(self, vault: Vault, name: str) -> VaultSecret:
        self.check_name(name)
        secret = vault.secrets.get(name.lower())
        if secret is None or secret.deleted is None:
            raise EmulatorError(
                404,
                "SecretNotFound",
                f"Deleted Secret not found: {name}. For help resolving this issue, please see "
                "https://go.microsoft.com/fwlink/?linkid=2125182",
            )
        return secret

    def get_deleted(self, vault: Vault, name: str) -> VaultSecret:
        """A soft-deleted secret; 404 when ``name`` is not deleted."""
        return self._deleted(vault, name)

    def deleted_secrets(self, vault: Vault) -> list[VaultSecret]:
        """Soft-deleted secrets, by name."""
        gone = [s for s in vault.secrets.values() if s.deleted is not None and s.versions]
        return sorted(gone, key=lambda s: s.name.lower())

    def purge(self, vault: Vault, name: str) -> None:
        """Remove a soft-deleted secret for good."""
        secret = self._deleted(vault, name)
        del vault.secrets[secret.name.lower()]

    def recover(self, vault: Vault, name: str) -> VaultSecret:
        """Bring a soft-deleted secret back."""
        secret = self._deleted(vault, name)
        secret.deleted = None
        secret.scheduled_purge = None
        return secret

    def update(
        self,
        vault: Vault,
        name: str,
        version: str,
        *,
        content_type: str | None = None,
        enabled: bool | None = None,
        expires: datetime | None = None,
        not_before: datetime | None = None,
        tags: Mapping[Any, Any] | None = None,
        fields: frozenset[str] = frozenset(),
    ) -> tuple[VaultSecret, VaultSecretVersion]:
        """Change the attributes named in ``fields`` of one version (never its value)."""
        secret, current = self.get_secret(vault, name, version or None)
        if "contentType" in fields:
            current.content_type = content_type
        if "enabled" in fields and enabled is not None:
            current.enabled = enabled
        if "exp" in fields:
            current.expires = expires
        if "nbf" in fields:
            current.not_before = not_before
        if "tags" in fields:
            current.tags = self.check_tags(tags)
        current.updated = self._now()
        return secret, current
