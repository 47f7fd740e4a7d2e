"""The boot step against each cloud's documented metadata and secret-store protocol, served on loopback.

Each test serves the exact shapes the clouds document (AWS IMDSv2 with its
session token and SSM GetParameters signed with SigV4; Azure IMDS userData in
base64, a managed-identity token and Key Vault GET secret; the GCP metadata
server and Secret Manager access), runs the boot step with --root in a temp
directory, and checks what it wrote and with which modes. Refusals write nothing.
"""
from __future__ import annotations

import base64
import json
import stat
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from boot_fixtures import SECRETS, agent
from metadata_server import MetadataServer, aws_server

from dataplane.boot import AGENT_CONFIG, EXABGP_CONFIG, Exit, boot, main
from dataplane.boot_sources import Aws, Azure, BootError, Drive, Gcp, Http
from dataplane.config import ConfigError, load_config

FAST = Http(deadline=0.5)


def _document(secrets: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"contract": 1, "agent": agent(), "secrets": secrets, **extra}).encode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_installed(root: Path) -> None:
    tls = root / "etc/transit/tls"
    assert (tls / "node.key").read_text() == SECRETS["key"]
    assert _mode(tls / "node.key") == 0o600
    assert (tls / "node.pem").read_text() == SECRETS["cert"]
    assert (tls / "ca.pem").read_text() == SECRETS["ca"]
    config = load_config(root / "etc/transit/agent.json", environ={})
    assert config.name == "connector-dc-fra"


# --- AWS: IMDSv2 + SSM --------------------------------------------------------

def test_aws_boot_reads_user_data_with_an_imdsv2_token_ssm_with_the_instance_role_and_turns_off_source_dest_check(tmp_path: Path) -> None:
    prefix = "/transit/acme/dev/connector-dc-fra"
    server = aws_server(_document({"store": "aws-ssm", "prefix": prefix}), {f"{prefix}/{k}": v for k, v in SECRETS.items()})
    with server.running():
        boot(Aws(imds=server.url, ssm_endpoint=server.url, ec2_endpoint=server.url, http=FAST), tmp_path)
    _assert_installed(tmp_path)
    ssm, ec2 = [r for r in server.requests if r.method == "POST"]
    for call, service in ((ssm, "ssm"), (ec2, "ec2")):
        auth = call.headers["authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=ASIATESTKEY/") and f"/eu-west-1/{service}/aws4_request" in auth
        assert call.headers["x-amz-security-token"] == "session-token"
    form = urllib.parse.parse_qs(ec2.body.decode())
    assert form["InstanceId"] == ["i-0123456789abcdef0"] and form["SourceDestCheck.Value"] == ["false"]


def test_aws_boot_fails_and_writes_nothing_when_a_parameter_is_missing(tmp_path: Path) -> None:
    prefix = "/transit/acme/dev/connector-dc-fra"
    server = aws_server(_document({"store": "aws-ssm", "prefix": prefix}), {f"{prefix}/ca": "x", f"{prefix}/cert": "y"})
    with server.running(), pytest.raises(BootError, match="no parameter /transit/acme/dev/connector-dc-fra/key"):
        boot(Aws(imds=server.url, ssm_endpoint=server.url, ec2_endpoint=server.url, http=FAST), tmp_path)
    assert not any(tmp_path.rglob("*.*"))
    assert all("x-amz-target" in r.headers for r in server.requests if r.method == "POST")  # no instance change either


# --- Azure: IMDS userData + Key Vault ---------------------------------------------

def test_azure_boot_decodes_imds_user_data_and_reads_key_vault_with_the_managed_identity(tmp_path: Path) -> None:
    server = MetadataServer()
    document = _document({"store": "azure-key-vault", "vault": "acme-dev-kv", "prefix": "connector-dc-fra"})
    metadata = lambda body: lambda r: (200, body) if r.headers.get("metadata") == "true" else (400, b"")  # noqa: E731
    server.route("GET", "/metadata/instance/compute/userData?api-version=2021-01-01&format=text", metadata(base64.b64encode(document)))
    token = json.dumps({"access_token": "kv-token", "token_type": "Bearer", "resource": "https://vault.azure.net"}).encode()
    server.route("GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net", metadata(token))
    for item, value in SECRETS.items():
        answer = json.dumps({"value": value, "id": f"https://acme-dev-kv.vault.azure.net/secrets/connector-dc-fra-{item}/1"}).encode()
        server.route("GET", f"/secrets/connector-dc-fra-{item}?api-version=7.4",
                     lambda r, a=answer: (200, a) if r.headers.get("authorization") == "Bearer kv-token" else (401, b""))
    with server.running():
        boot(Azure(imds=server.url, vault_url=server.url, http=FAST), tmp_path)
    _assert_installed(tmp_path)


# --- GCP: metadata server + Secret Manager ---------------------------------------

def test_gcp_boot_reads_the_instance_attribute_and_secret_manager_with_the_service_account(tmp_path: Path) -> None:
    server = MetadataServer()
    document = _document({"store": "gcp-secret-manager", "prefix": "transit-acme-dev-connector-dc-fra"})
    google = lambda body: lambda r: (200, body) if r.headers.get("metadata-flavor") == "Google" else (403, b"")  # noqa: E731
    server.route("GET", "/computeMetadata/v1/instance/attributes/transit-boot", google(document))
    server.route("GET", "/computeMetadata/v1/project/project-id", google(b"acme-prod-1"))
    token = json.dumps({"access_token": "sa-token", "expires_in": 3599, "token_type": "Bearer"}).encode()
    server.route("GET", "/computeMetadata/v1/instance/service-accounts/default/token", google(token))
    for item, value in SECRETS.items():
        name = f"projects/acme-prod-1/secrets/transit-acme-dev-connector-dc-fra-{item}/versions/latest"
        answer = json.dumps({"name": name, "payload": {"data": base64.b64encode(value.encode()).decode()}}).encode()
        server.route("GET", f"/v1/{name}:access", lambda r, a=answer: (200, a) if r.headers.get("authorization") == "Bearer sa-token" else (401, b""))
    with server.running():
        boot(Gcp(metadata=server.url, secret_manager=server.url, http=FAST), tmp_path)
    _assert_installed(tmp_path)


# --- Config drive ------------------------------------------------------------------

def _drive(path: Path, document: bytes, **files: str) -> Path:
    path.mkdir()
    (path / "boot.json").write_bytes(document)
    for name, text in {**SECRETS, **files}.items():
        (path / name).write_text(text)
    return path


def test_drive_boot_with_bgp_writes_the_exabgp_session_with_its_md5_key_0600(tmp_path: Path) -> None:
    bgp = {"local_ip": "192.168.255.2", "local_asn": 65000, "peer_ip": "192.168.255.1", "peer_asn": 65010, "announce": ["10.30.40.0/24"]}
    drive = _drive(tmp_path / "drive", _document({"store": "config-drive"}, bgp=bgp), **{"bgp-md5": "dcFraMd5"})
    root = tmp_path / "root"
    assert main(["--source", "drive", "--drive", str(drive), "--root", str(root)]) == Exit.OK
    _assert_installed(root)
    exabgp = root / EXABGP_CONFIG.relative_to("/")
    assert _mode(exabgp) == 0o600
    text = exabgp.read_text()
    assert "neighbor 192.168.255.1 {" in text and 'md5-password "dcFraMd5";' in text and "route 10.30.40.0/24 next-hop self;" in text


def test_a_refused_config_exits_2_names_the_field_and_removes_the_old_agent_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(_document({"store": "config-drive"}))
    document["agent"]["peers"][0]["private_addr"] = "not-an-ip"
    drive = _drive(tmp_path / "drive", json.dumps(document).encode())
    root = tmp_path / "root"
    old = root / AGENT_CONFIG.relative_to("/")
    old.parent.mkdir(parents=True)
    old.write_text("{}")  # a previous boot's config must not survive a refused one
    assert main(["--source", "drive", "--drive", str(drive), "--root", str(root)]) == Exit.REFUSED
    assert "agent.peers[0].private_addr:" in capsys.readouterr().err
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_bgp_on_an_edge_is_refused() -> None:
    from dataplane.boot_document import parse_document

    bgp = {"local_ip": "192.168.255.2", "local_asn": 65000, "peer_ip": "192.168.255.1", "peer_asn": 65010, "announce": ["10.30.40.0/24"]}
    document = {"agent": agent(role="edge"), "secrets": {"store": "config-drive"}, "bgp": bgp}
    with pytest.raises(ConfigError, match="bgp: only a connector"):
        parse_document(json.dumps(document))


def test_a_store_of_another_cloud_is_refused_before_any_call(tmp_path: Path) -> None:
    drive = _drive(tmp_path / "drive", _document({"store": "aws-ssm", "prefix": "/transit/acme/dev/x"}))
    with pytest.raises(BootError, match="secrets.store: aws-ssm cannot be read from a config drive"):
        boot(Drive(drive), tmp_path / "root")


def test_an_unreachable_metadata_service_fails_with_the_url_after_the_deadline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = MetadataServer()  # never started: connection refused
    with pytest.raises(BootError, match=r"PUT http://127\.0\.0\.1:\d+/latest/api/token"):
        boot(Aws(imds=server.url, http=Http(deadline=0.3)), tmp_path)
