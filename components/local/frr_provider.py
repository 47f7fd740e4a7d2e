"""FrrRouter: one FRR instance (zebra, staticd, bgpd) in a namespace, with its own pathspace.

FRR 8.4's `-N <name>` keeps config in /etc/frr/<name>/ and sockets and pid
files in /var/run/frr/<name>/, so many routers share one machine. The config
arrives with MD5 placeholders and the keys as a separate secret input; the keys
are substituted only into the file on disk (mode 0640, owner frr).
"""
from __future__ import annotations

import os
import pwd
import shutil
import time
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from components.local import sh
from components.local.daemon_provider import in_namespace, is_running, proc_start_time, stop_process
from components.local.frr_config import fill_secrets
from components.local.provider_base import LocalProvider

FRR_BIN = Path("/usr/lib/frr")
ETC_ROOT = Path("/etc/frr")
RUN_ROOT = Path("/var/run/frr")
DAEMONS = ("zebra", "staticd", "bgpd")


def _paths(name: str) -> tuple[Path, Path]:
    return ETC_ROOT / name, RUN_ROOT / name


def _pids(name: str) -> dict[str, int]:
    """Pid of each daemon from its pid file, for the daemons that wrote one."""
    pids = {}
    for daemon in DAEMONS:
        pid_file = RUN_ROOT / name / f"{daemon}.pid"
        if pid_file.exists():
            pids[daemon] = int(pid_file.read_text().strip())
    return pids


def stop_router(name: str) -> None:
    """Stop the instance's daemons (bgpd first, so sessions close cleanly) and remove its dirs."""
    for daemon, pid in reversed(list(_pids(name).items())):
        start = proc_start_time(pid)
        if start is not None:
            stop_process(pid, start)
    for path in _paths(name):
        shutil.rmtree(path, ignore_errors=True)


def vtysh(ns: str, name: str, command: str, timeout: float = 10.0) -> str:
    """Run one vtysh command against the instance and return its output."""
    return sh.ns_run(ns, ["vtysh", "-N", name, "-c", command], timeout=timeout).stdout


class FrrRouterProvider(LocalProvider):
    """Starts FRR with `-N name` in `ns`; id is the instance name."""

    OUTPUT_KEYS = frozenset({"pids", "start_times"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        stop_router(props["name"])  # an interrupted run may have left one behind
        try:
            return self._start(props)
        except Exception:
            stop_router(props["name"])  # a failed create leaves no daemon or key file behind
            raise

    def _start(self, props: dict[str, Any]) -> CreateResult:
        name, ns = props["name"], props["ns"]
        etc, run = _paths(name)
        frr = pwd.getpwnam("frr")
        for path in (etc, run):
            path.mkdir(parents=True, mode=0o750)
            os.chown(path, frr.pw_uid, frr.pw_gid)
        conf = etc / "frr.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as handle:
            handle.write(fill_secrets(props["config"], props.get("secrets") or {}))
        os.chown(conf, frr.pw_uid, frr.pw_gid)
        (etc / "vtysh.conf").touch(mode=0o640)
        os.chown(etc / "vtysh.conf", frr.pw_uid, frr.pw_gid)
        for daemon in DAEMONS:
            sh.ns_run(ns, [str(FRR_BIN / daemon), "-d", "-N", name, "-f", str(conf)])
        self._wait_ready(ns, name)
        pids = _pids(name)
        outs = {**props, "pids": pids, "start_times": {d: proc_start_time(p) for d, p in pids.items()}}
        return CreateResult(id_=name, outs=outs)

    @staticmethod
    def _wait_ready(ns: str, name: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if set(_pids(name)) == set(DAEMONS):
                probe = sh.ns_run(ns, ["vtysh", "-N", name, "-c", "show bgp summary json"], check=False)
                if probe.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise sh.CommandError(f"FRR instance {name} in {ns} did not answer within {timeout}s")
            time.sleep(0.1)

    def alive(self, id_: str, outs: dict[str, Any]) -> bool:
        pids, starts = outs.get("pids") or {}, outs.get("start_times") or {}
        return set(pids) == set(DAEMONS) and all(
            is_running(pids[d], starts.get(d)) and in_namespace(int(pids[d]), outs["ns"]) for d in DAEMONS)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not self.alive(id_, props):
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        stop_router(id_)


class FrrRouter(Resource, module="local", name="FrrRouter"):
    """An FRR instance `name` in namespace `ns` running `config`; `secrets` maps each MD5
    placeholder key in the config to its value and stays a Pulumi secret."""

    pids: pulumi.Output[dict[str, int]]

    def __init__(self, resource_name: str, *, name: str, ns: Any, config: str, secrets: Any = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"name": name, "ns": ns, "config": config, "secrets": pulumi.Output.secret(secrets or {}),
                 "pids": None, "start_times": None}
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["secrets"]))
        super().__init__(FrrRouterProvider(), resource_name, props, opts)
