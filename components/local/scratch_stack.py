"""A throwaway Pulumi project and stack that runs LocalFabric on one fabric file.

The e2e tests and `bench.local_up` drive the real CLI through it, each on a
stack of its own (so its namespaces carry their own prefix) with fresh random
MD5 keys set as secret config. Independent of `stacks/`, so it measures the
local target alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from pathlib import Path

from components.loader import load_spec
from components.local.layout import name_prefix

REPO = Path(__file__).resolve().parents[2]
PULUMI = REPO / ".tools" / "bin" / "pulumi"

PROGRAM = textwrap.dedent(
    '''
    import pulumi

    from components import load_spec
    from components.local.fabric import LocalFabric, LocalFabricArgs

    config = pulumi.Config("transit")
    spec = load_spec(config.require("fabric"))
    keys = [n.bgp.md5_secret for n in spec.networks if n.bgp] + [c.bgp.md5_secret for c in spec.circuits]
    fabric = LocalFabric("fabric", LocalFabricArgs(
        spec=spec, secrets={k: config.require_secret(k) for k in keys}, stack=pulumi.get_stack()))
    pulumi.export("local", fabric.outputs)
    '''
)


def offline_env(state_dir: Path, home: Path) -> dict[str, str]:
    """The CLI's environment: local file backend, no update check or plugin download."""
    state_dir.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(PATH=f"{PULUMI.parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PULUMI_BACKEND_URL=f"file://{state_dir}", PULUMI_CONFIG_PASSPHRASE="scratch",
               PULUMI_SKIP_UPDATE_CHECK="true", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
               PULUMI_HOME=str(home))
    return env


class ScratchStack:
    """A project in `root` with one stack; call `create(fabric_file)` first, `remove()` last."""

    def __init__(self, root: Path, env: dict[str, str], name: str | None = None) -> None:
        self.root, self.env = root, env
        self.name = name or f"s{uuid.uuid4().hex[:6]}"
        self.secrets: dict[str, str] = {}
        self.prefix = ""

    def pulumi(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run one CLI command on this stack; raise with its output if it fails and `check`."""
        done = subprocess.run([str(PULUMI), *args, "-s", self.name, "--non-interactive"], cwd=self.root,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"pulumi {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def create(self, fabric_file: Path) -> None:
        """Write the project, init the stack, set the fabric and random MD5 keys as secrets."""
        self.root.mkdir(parents=True, exist_ok=True)
        venv = REPO / ".venv"
        (self.root / "Pulumi.yaml").write_text(
            f"name: transit\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {venv}\n")
        (self.root / "__main__.py").write_text(PROGRAM)
        self.pulumi("stack", "init")
        self.pulumi("config", "set", "transit:fabric", str(fabric_file))
        spec = load_spec(fabric_file)
        self.prefix = name_prefix(spec.name, self.name)
        keys = [n.bgp.md5_secret for n in spec.networks if n.bgp] + [c.bgp.md5_secret for c in spec.circuits]
        self.secrets = {k: f"md5-{uuid.uuid4().hex[:12]}" for k in dict.fromkeys(keys)}
        for key, value in self.secrets.items():
            self.pulumi("config", "set", "--secret", f"transit:{key}", value)

    def outputs(self) -> dict:
        return json.loads(self.pulumi("stack", "output", "--json").stdout)

    def remove(self) -> list[str]:
        """Destroy everything and forget the stack; safe after a failed up. Then sweep anything
        still carrying the stack's prefix (a crashed CLI can leave objects it never recorded)
        and return what had to be swept, so callers can insist it is nothing."""
        self.pulumi("destroy", "--yes", "--skip-preview", check=False)
        self.pulumi("stack", "rm", "--yes", "--force", check=False)
        return sweep(self.prefix) if self.prefix else []


def sweep(prefix: str) -> list[str]:
    """Stop and remove every daemon, FRR instance and namespace whose name starts with `prefix`."""
    from components.local.daemon_provider import RUN_ROOT, DaemonProvider
    from components.local.frr_provider import ETC_ROOT
    from components.local.frr_provider import RUN_ROOT as FRR_RUN_ROOT
    from components.local.frr_provider import stop_router
    from components.local.netns_provider import delete_namespace

    swept = []
    for path in sorted(RUN_ROOT.glob(f"{prefix}-*")):
        swept.append(str(path))
        DaemonProvider._cleanup(path)
    for path in sorted({*FRR_RUN_ROOT.glob(f"{prefix}-*"), *ETC_ROOT.glob(f"{prefix}-*")}):
        swept.append(str(path))
        stop_router(path.name)
    for path in sorted(Path("/run/netns").glob(f"{prefix}-*")):
        swept.append(f"netns {path.name}")
        delete_namespace(path.name)
    return swept
