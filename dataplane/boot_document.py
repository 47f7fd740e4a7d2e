"""The boot document: what a VM built from our image reads at boot (the boot contract).

One JSON document per VM, delivered as AWS user data, Azure `userData`, the GCP
instance attribute `transit-boot`, or `boot.json` on a data-center VM's config
drive. It carries the AgentConfig, where the node's TLS files (and a BGP MD5
key) are kept, and, on a data-center connector, its BGP session. It holds no
secret: the boot step fetches those with the VM's own identity. The components
build it with `document_json`, the boot step reads it with `parse_document`,
so both sides share this one definition (docs/images.md "Boot contract").
"""
from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dataplane.bgp_session import BgpSession
from dataplane.config import AgentConfig, ConfigError, validation_problems

ITEMS = ("ca", "cert", "key")
"""The TLS items every store holds for a node: fabric CA, node certificate, node key."""
BGP_MD5 = "bgp-md5"
"""The item holding a data-center connector's BGP MD5 key."""
GCP_ATTRIBUTE = "transit-boot"
"""The GCP instance metadata key that carries the document."""
DRIVE_LABEL = "TRANSIT"
"""The filesystem label of a data-center VM's config drive (ISO 9660 or FAT)."""
DRIVE_DOCUMENT = "boot.json"
"""The document's file name on the config drive; each item is a file beside it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsSsm(_Model):
    """SSM Parameter Store: `<prefix>/ca`, `<prefix>/cert` and `<prefix>/key` (SecureString)."""

    store: Literal["aws-ssm"]
    prefix: str = Field(pattern=r"^(/[A-Za-z0-9_.-]+)+$", description="Parameter path, /transit/<fabric>/<environment>/<name>; the instance role may read only under it.")

    def name(self, item: str) -> str:
        return f"{self.prefix}/{item}"


class AzureKeyVault(_Model):
    """Azure Key Vault secrets `<prefix>-ca`, `<prefix>-cert`, `<prefix>-key`, read with the VM's managed identity."""

    store: Literal["azure-key-vault"]
    vault: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$", description="Key Vault name (https://<vault>.vault.azure.net).")
    prefix: str = Field(pattern=r"^[A-Za-z0-9-]{1,100}$", description="Secret name prefix; Key Vault names allow letters, digits and '-'.")

    def name(self, item: str) -> str:
        return f"{self.prefix}-{item}"


class GcpSecretManager(_Model):
    """GCP Secret Manager secrets `<prefix>-ca`, `<prefix>-cert`, `<prefix>-key` (latest version), read with the VM's service account."""

    store: Literal["gcp-secret-manager"]
    project: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", description="Project holding the secrets. Defaults to the VM's own project.")
    prefix: str = Field(pattern=r"^[A-Za-z0-9_-]{1,200}$", description="Secret id prefix; ids allow letters, digits, '_' and '-'.")

    def name(self, item: str) -> str:
        return f"{self.prefix}-{item}"


class ConfigDrive(_Model):
    """Files `ca`, `cert`, `key` (and `bgp-md5`) beside boot.json on the config drive."""

    store: Literal["config-drive"]

    def name(self, item: str) -> str:
        return item


SecretStore = Annotated[AwsSsm | AzureKeyVault | GcpSecretManager | ConfigDrive, Field(discriminator="store")]


class BootDocument(_Model):
    """Everything a VM needs at boot, minus the secrets themselves."""

    contract: Literal[1] = Field(default=1, description="Boot contract version. Valid values: 1.")
    agent: AgentConfig = Field(description="The agent's config, written to /etc/transit/agent.json.")
    secrets: SecretStore = Field(description="Where this node's TLS files (and BGP MD5 key) are kept.")
    bgp: BgpSession | None = Field(default=None, description="A data-center connector's BGP session (ExaBGP). Defaults to none.")

    @model_validator(mode="after")
    def _bgp_on_connectors(self) -> BootDocument:
        if self.bgp is not None and self.agent.role != "connector":
            raise ValueError("bgp: only a connector peers with a data-center router")
        return self

    def items(self) -> list[str]:
        """The items to fetch from the store."""
        return [*ITEMS, *([BGP_MD5] if self.bgp else [])]


def parse_document(text: str | bytes) -> BootDocument:
    """Decode and validate a boot document; raise ConfigError with every bad field's path."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"(document): not JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(["(document): must be a JSON object"])
    try:
        return BootDocument.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc)) from None


def document_json(agent_config_json: str, secrets: AwsSsm | AzureKeyVault | GcpSecretManager | ConfigDrive, bgp: BgpSession | None = None) -> str:
    """The document a component writes into user data, from its AgentConfig JSON.

    Not validated here (components build AgentConfigs from validated models);
    tests/unit/test_boot_contract.py feeds the components' output to the boot step.
    """
    document = {"contract": 1, "agent": json.loads(agent_config_json), "secrets": secrets.model_dump(mode="json", exclude_none=True)}
    if bgp is not None:
        document["bgp"] = bgp.model_dump(mode="json")
    return json.dumps(document, separators=(",", ":"), sort_keys=True)
