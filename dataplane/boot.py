"""`transit-boot --source {aws,azure,gcp,drive}`: turn a fresh VM into a configured node, or refuse.

Run once per boot by transit-boot.service, before transit-agent.service (and,
on a data-center connector, transit-exabgp.service) which require it. It reads
the boot document (dataplane/boot_document.py) from the source, validates it,
fetches every secret it names with the VM's own identity, makes the instance
settings only the VM can make (AWS: source/destination check off), and only then writes
the files: TLS files where AgentConfig.tls says (the key mode 0600), the ExaBGP
config (0600) when the document has a BGP session, and /etc/transit/agent.json
last. A document it refuses or a secret it cannot fetch writes nothing and
exits non-zero with the reason on stderr (the journal), so the agent never
starts on a half-configured node.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dataplane import bgp_session
from dataplane.boot_document import BGP_MD5, BootDocument, parse_document
from dataplane.boot_sources import Aws, Azure, BootError, Drive, Gcp, Http, Source
from dataplane.config import ConfigError

ETC = Path("/etc/transit")
AGENT_CONFIG = ETC / "agent.json"
EXABGP_CONFIG = ETC / "exabgp.conf"


class Exit:
    """Exit codes (docs/images.md)."""

    OK = 0
    FETCH_FAILED = 1
    REFUSED = 2


def _write(root: Path, path: Path, content: str, mode: int) -> None:
    """Write atomically (temp file then rename) with `mode` from the first byte on."""
    target = root / path.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(temp, mode)  # umask never widens, but be explicit
    temp.rename(target)


def install(document: BootDocument, secrets: dict[str, str], root: Path = Path("/")) -> list[Path]:
    """Write every file the node needs; agent.json last. Returns the paths written."""
    tls = document.agent.tls
    files = [(tls.key, secrets["key"], 0o600), (tls.cert, secrets["cert"], 0o644), (tls.ca, secrets["ca"], 0o644)]
    if document.bgp is not None:
        files.append((EXABGP_CONFIG, bgp_session.render(document.bgp, secrets[BGP_MD5]), 0o600))
    else:
        (root / EXABGP_CONFIG.relative_to("/")).unlink(missing_ok=True)
    files.append((AGENT_CONFIG, document.agent.model_dump_json(indent=2) + "\n", 0o644))
    for path, content, mode in files:
        _write(root, Path(path), content, mode)
    return [Path(path) for path, _, _ in files]


def boot(source: Source, root: Path = Path("/")) -> BootDocument:
    """Read, validate, fetch, then write. Raises ConfigError (refused) or BootError (fetch failed)."""
    (root / AGENT_CONFIG.relative_to("/")).unlink(missing_ok=True)  # never leave an older node's config behind
    document = parse_document(source.document())
    secrets = source.secrets(document)
    missing = [item for item in document.items() if not secrets.get(item)]
    if missing:
        raise BootError(f"secrets: {', '.join(missing)} empty or missing in {document.secrets.store}")
    source.prepare_instance()
    install(document, secrets, root)
    return document


def _source(args: argparse.Namespace) -> Source:
    http = Http(deadline=args.timeout)
    if args.source == "aws":
        return Aws(http=http)
    if args.source == "azure":
        return Azure(http=http)
    if args.source == "gcp":
        return Gcp(http=http)
    return Drive(args.drive)


def main(argv: list[str] | None = None) -> int:
    """Console script `transit-boot`."""
    parser = argparse.ArgumentParser(prog="transit-boot", description="Configure this VM from its boot document (docs/images.md).")
    parser.add_argument("--source", required=True, choices=["aws", "azure", "gcp", "drive"], help="where the boot document comes from")
    parser.add_argument("--drive", type=Path, help="read the config drive's files from this directory instead of mounting the drive")
    parser.add_argument("--root", type=Path, default=Path("/"), help="write under this directory instead of / (tests)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to keep retrying the metadata service and the store")
    args = parser.parse_args(argv)
    try:
        document = boot(_source(args), args.root)
    except ConfigError as exc:
        print(f"transit-boot: refused the boot document from {args.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return Exit.REFUSED
    except BootError as exc:
        print(f"transit-boot: {exc}", file=sys.stderr)
        return Exit.FETCH_FAILED
    summary = {"node": document.agent.name, "role": document.agent.role, "store": document.secrets.store, "bgp": document.bgp is not None}
    print(f"transit-boot: configured {json.dumps(summary, sort_keys=True)}", file=sys.stderr)
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
