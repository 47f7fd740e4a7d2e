"""Where a VM reads its boot document and secrets: each cloud's metadata service and secret store, or a config drive.

Each source speaks its cloud's documented protocol with the VM's own identity:

- AWS: IMDSv2 (a session token from `PUT /latest/api/token`, then user data,
  region and the instance role's credentials), SSM `GetParameters` signed by
  botocore (SigV4) with those credentials.
- Azure: IMDS `compute/userData` (base64), a managed-identity token for
  https://vault.azure.net, Key Vault `GET /secrets/<name>`.
- GCP: the metadata server (attribute `transit-boot`, project id, the default
  service account's token), Secret Manager `versions/latest:access`.
- Config drive: `boot.json` and one file per item on a filesystem labelled TRANSIT.

Base URLs are arguments so the tests can serve each protocol on loopback.
"""
from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from dataplane.boot_document import (
    DRIVE_DOCUMENT, DRIVE_LABEL, GCP_ATTRIBUTE, AwsSsm, AzureKeyVault, BootDocument, ConfigDrive, GcpSecretManager,
)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class BootError(Exception):
    """The document or a secret could not be fetched (not a refusal of the document itself)."""


class Source(Protocol):
    """One place a VM boots from."""

    def document(self) -> bytes:
        """The boot document's raw bytes."""

    def secrets(self, document: BootDocument) -> dict[str, str]:
        """Every item the document names (`document.items()`), by item."""

    def prepare_instance(self) -> None:
        """Instance settings only the VM can make for itself, before the agent starts."""


class Http:
    """Small HTTP client for metadata services and REST stores: retries while the network comes up."""

    def __init__(self, deadline: float = 120.0) -> None:
        self.deadline = deadline

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, data: bytes | None = None) -> bytes:
        """The response body; BootError naming the URL when the call fails for good."""
        give_up = time.monotonic() + self.deadline
        delay = 0.2
        while True:
            request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
            try:
                # No proxy: metadata services are link-local and must never be proxied.
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(request, timeout=10) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRYABLE_STATUS or time.monotonic() > give_up:
                    detail = exc.read()[:300].decode(errors="replace")
                    raise BootError(f"{method} {url}: HTTP {exc.code} {detail}") from None
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() > give_up:
                    raise BootError(f"{method} {url}: {getattr(exc, 'reason', exc)}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def json(self, method: str, url: str, headers: Mapping[str, str] | None = None) -> dict:
        body = self.request(method, url, headers)
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            raise BootError(f"{method} {url}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise BootError(f"{method} {url}: answer is not a JSON object")
        return data


def _store(document: BootDocument, kind: type, source: str):  # type: ignore[no-untyped-def]
    if not isinstance(document.secrets, kind):
        raise BootError(f"secrets.store: {document.secrets.store} cannot be read from {source}")
    return document.secrets


class Aws:
    """An EC2 instance: IMDSv2 and SSM Parameter Store."""

    def __init__(
        self, imds: str = "http://169.254.169.254", ssm_endpoint: str | None = None, ec2_endpoint: str | None = None,
        http: Http | None = None,
    ) -> None:
        self.imds = imds.rstrip("/")
        self.endpoints = {"ssm": ssm_endpoint, "ec2": ec2_endpoint}
        self.http = http or Http()
        self._token: str | None = None

    def _get(self, path: str) -> bytes:
        if self._token is None:
            self._token = self.http.request(
                "PUT", f"{self.imds}/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}
            ).decode()
        return self.http.request("GET", f"{self.imds}{path}", {"X-aws-ec2-metadata-token": self._token})

    def document(self) -> bytes:
        return self._get("/latest/user-data")

    def secrets(self, document: BootDocument) -> dict[str, str]:
        store: AwsSsm = _store(document, AwsSsm, "an AWS instance (expected aws-ssm)")
        names = {store.name(item): item for item in document.items()}
        answer = self._call("ssm", "get_parameters", Names=sorted(names), WithDecryption=True)
        if answer.get("InvalidParameters"):
            raise BootError(f"ssm: no parameter {', '.join(answer['InvalidParameters'])}")
        return {names[p["Name"]]: p["Value"] for p in answer["Parameters"]}

    def prepare_instance(self) -> None:
        """Turn off the source/destination check: agents deliver from the original source address.

        A launch template cannot turn it off; the instance role may, on its own
        fabric's instances only (components/aws/base.py `node_policy`).
        """
        instance = self._get("/latest/meta-data/instance-id").decode()
        self._call("ec2", "modify_instance_attribute", InstanceId=instance, SourceDestCheck={"Value": False})

    def _call(self, service: str, operation: str, **params: object) -> dict:
        """One AWS API call signed (SigV4, by botocore) with the instance role's credentials from IMDSv2."""
        import botocore.session  # only AWS images pay for botocore's import time
        from botocore.exceptions import BotoCoreError, ClientError

        region = self._get("/latest/meta-data/placement/region").decode()
        role = self._get("/latest/meta-data/iam/security-credentials/").decode().split()[0]
        creds = json.loads(self._get(f"/latest/meta-data/iam/security-credentials/{role}"))
        session = botocore.session.Session()
        session.set_credentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"])
        client = session.create_client(service, region_name=region, endpoint_url=self.endpoints[service])
        try:
            return getattr(client, operation)(**params)
        except (BotoCoreError, ClientError) as exc:
            raise BootError(f"{service} {operation}: {exc}") from None


class Azure:
    """An Azure VM: IMDS and Key Vault with the VM's managed identity."""

    VAULT_RESOURCE = "https://vault.azure.net"

    def __init__(self, imds: str = "http://169.254.169.254", vault_url: str | None = None, http: Http | None = None) -> None:
        self.imds = imds.rstrip("/")
        self.vault_url = vault_url
        self.http = http or Http()

    def document(self) -> bytes:
        encoded = self.http.request(
            "GET", f"{self.imds}/metadata/instance/compute/userData?api-version=2021-01-01&format=text", {"Metadata": "true"}
        )
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            raise BootError("IMDS userData is not base64") from None

    def secrets(self, document: BootDocument) -> dict[str, str]:
        store: AzureKeyVault = _store(document, AzureKeyVault, "an Azure VM (expected azure-key-vault)")
        query = urllib.parse.urlencode({"api-version": "2018-02-01", "resource": self.VAULT_RESOURCE})
        token = self.http.json("GET", f"{self.imds}/metadata/identity/oauth2/token?{query}", {"Metadata": "true"})["access_token"]
        base = (self.vault_url or f"https://{store.vault}.vault.azure.net").rstrip("/")
        out = {}
        for item in document.items():
            answer = self.http.json("GET", f"{base}/secrets/{store.name(item)}?api-version=7.4", {"Authorization": f"Bearer {token}"})
            out[item] = answer["value"]
        return out

    def prepare_instance(self) -> None:
        """Nothing: IP forwarding on the NIC is the components' setting."""


class Gcp:
    """A GCE instance: the metadata server and Secret Manager with the VM's service account."""

    FLAVOR = {"Metadata-Flavor": "Google"}

    def __init__(
        self, metadata: str = "http://metadata.google.internal", secret_manager: str = "https://secretmanager.googleapis.com",
        http: Http | None = None,
    ) -> None:
        self.metadata = metadata.rstrip("/")
        self.secret_manager = secret_manager.rstrip("/")
        self.http = http or Http()

    def document(self) -> bytes:
        return self.http.request("GET", f"{self.metadata}/computeMetadata/v1/instance/attributes/{GCP_ATTRIBUTE}", self.FLAVOR)

    def secrets(self, document: BootDocument) -> dict[str, str]:
        store: GcpSecretManager = _store(document, GcpSecretManager, "a GCE instance (expected gcp-secret-manager)")
        project = store.project or self.http.request("GET", f"{self.metadata}/computeMetadata/v1/project/project-id", self.FLAVOR).decode()
        token = self.http.json(
            "GET", f"{self.metadata}/computeMetadata/v1/instance/service-accounts/default/token", self.FLAVOR
        )["access_token"]
        out = {}
        for item in document.items():
            url = f"{self.secret_manager}/v1/projects/{project}/secrets/{store.name(item)}/versions/latest:access"
            answer = self.http.json("GET", url, {"Authorization": f"Bearer {token}"})
            out[item] = base64.b64decode(answer["payload"]["data"]).decode()
        return out

    def prepare_instance(self) -> None:
        """Nothing: IP forwarding on the NIC is the components' setting."""


class Drive:
    """A data-center VM: a config drive (mounted read-only once), or a directory holding the same files."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._files: dict[str, bytes] | None = None

    def _contents(self) -> dict[str, bytes]:
        if self._files is None:
            self._files = self._read_all(self.directory) if self.directory is not None else self._mount_and_read()
        return self._files

    @staticmethod
    def _read_all(directory: Path) -> dict[str, bytes]:
        try:
            return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
        except OSError as exc:
            raise BootError(f"config drive: cannot read {directory}: {exc.strerror}") from None

    def _mount_and_read(self) -> dict[str, bytes]:
        device = Path("/dev/disk/by-label") / DRIVE_LABEL
        if not device.exists():
            raise BootError(f"no config drive: {device} does not exist (attach a drive labelled {DRIVE_LABEL})")
        with tempfile.TemporaryDirectory(prefix="transit-drive-") as mount:
            run = subprocess.run(["mount", "-o", "ro", str(device), mount], capture_output=True, text=True, check=False)
            if run.returncode != 0:
                raise BootError(f"mount {device}: {run.stderr.strip()}")
            try:
                return self._read_all(Path(mount))
            finally:
                subprocess.run(["umount", mount], check=False)

    def _read(self, name: str) -> bytes:
        files = self._contents()
        if name not in files:
            raise BootError(f"config drive: no file {name!r} (it holds {', '.join(sorted(files)) or 'nothing'})")
        return files[name]

    def document(self) -> bytes:
        return self._read(DRIVE_DOCUMENT)

    def secrets(self, document: BootDocument) -> dict[str, str]:
        store: ConfigDrive = _store(document, ConfigDrive, "a config drive (expected config-drive)")
        return {item: self._read(store.name(item)).decode() for item in document.items()}

    def prepare_instance(self) -> None:
        """Nothing: a data-center VM's hypervisor needs no per-instance setting."""
