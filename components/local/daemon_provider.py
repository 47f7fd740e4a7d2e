"""Daemon: one long-running process in a namespace (transit-agent, ExaBGP, an app server).

The process is started in its own session so it outlives the provider process
that `pulumi up` runs. Its pid and kernel start time are outputs, so `read`
(and therefore `pulumi refresh`) and `diff` notice a process that died, or a
pid that was reused, and the next `up` starts it again. Its files (config,
certificates, keys) live in a private directory under RUN_ROOT that `delete`
removes.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from components.local import sh
from components.local.provider_base import LocalProvider

RUN_ROOT = Path("/run/transit")
DIR_PLACEHOLDER = "{dir}"


class DaemonStartError(RuntimeError):
    """The process exited or never listened; the message holds its log tail."""


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of a live (non-zombie) pid, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(pid: int | None, start_time: int | None) -> bool:
    """True when pid is alive and is still the process we started."""
    return bool(pid) and start_time is not None and proc_start_time(int(pid)) == int(start_time)


def in_namespace(pid: int, ns: str) -> bool:
    """True when pid runs in the network namespace named `ns` (not in a deleted one of that name)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
    except (FileNotFoundError, ProcessLookupError):
        return False


def stop_process(pid: int, start_time: int, grace_seconds: float = 5.0) -> None:
    """TERM the process group, then KILL it after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not is_running(pid, start_time):
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and is_running(pid, start_time):
            time.sleep(0.05)


def port_listening(ns: str, port: int) -> bool:
    """True when a TCP socket listens on `port` inside `ns`."""
    out = sh.run(["ss", "-N", ns, "-Hltn", f"sport = :{port}"], check=False).stdout
    return bool(out.strip())


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def write_files(base: Path, files: dict[str, str]) -> None:
    """Write each relative path under base, readable by root only."""
    for rel, content in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)


class DaemonProvider(LocalProvider):
    """Starts, watches and stops one process; id is the instance name."""

    OUTPUT_KEYS = frozenset({"pid", "start_time", "dir"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        name, ns = props["name"], props["ns"]
        base = RUN_ROOT / name
        self._cleanup(base)
        base.mkdir(parents=True, mode=0o700)
        write_files(base, {**(props.get("files") or {}), **(props.get("secret_files") or {})})
        argv = [str(a).replace(DIR_PLACEHOLDER, str(base)) for a in props["argv"]]
        env = {**os.environ, **{k: str(v) for k, v in (props.get("env") or {}).items()}}
        log = base / "log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=base, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        (base / "pid").write_text(str(proc.pid))
        try:
            self._wait_ready(proc, ns, props.get("ready_port"), float(props.get("ready_timeout") or 10), log)
        except DaemonStartError:
            self._cleanup(base)  # a failed create leaves no process, key or file behind
            raise
        start_time = proc_start_time(proc.pid)
        outs = {**props, "pid": proc.pid, "start_time": start_time, "dir": str(base)}
        return CreateResult(id_=name, outs=outs)

    @staticmethod
    def _wait_ready(proc: subprocess.Popen[bytes], ns: str, port: int | None, timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        settle = time.monotonic() + 0.3  # a process that dies at once from bad config
        while True:
            if proc.poll() is not None:
                raise DaemonStartError(f"{proc.args} exited {proc.returncode}:\n{_log_tail(log)}")
            ready = port_listening(ns, int(port)) if port else time.monotonic() >= settle
            if ready:
                return
            if time.monotonic() > deadline:
                raise DaemonStartError(f"{proc.args} not listening on {port} after {timeout}s:\n{_log_tail(log)}")
            time.sleep(0.05)

    @staticmethod
    def _cleanup(base: Path) -> None:
        pid_file = base / "pid"
        text = pid_file.read_text().strip() if pid_file.is_file() else ""
        if text.isdigit():  # an interrupted run left a process behind
            pid = int(text)
            start = proc_start_time(pid)
            if start is not None:
                stop_process(pid, start)
        shutil.rmtree(base, ignore_errors=True)

    def alive(self, id_: str, outs: dict[str, Any]) -> bool:
        pid = outs.get("pid")
        return is_running(pid, outs.get("start_time")) and in_namespace(int(pid), outs["ns"])

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not self.alive(id_, props):
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if props.get("pid") and props.get("start_time") is not None:
            stop_process(int(props["pid"]), int(props["start_time"]))
        self._cleanup(RUN_ROOT / id_)


class Daemon(Resource, module="local", name="Daemon"):
    """A process `argv` in namespace `ns`, with `files` and `secret_files` written under its
    own directory (`{dir}` in argv is replaced by that directory). `ready_port`, when set,
    is a TCP port the process must listen on before the resource counts as created."""

    pid: pulumi.Output[int]
    dir: pulumi.Output[str]

    def __init__(self, resource_name: str, *, name: str, ns: Any, argv: list[Any],
                 files: dict[str, Any] | None = None, secret_files: Any = None,
                 env: dict[str, str] | None = None, ready_port: int | None = None,
                 ready_timeout: float = 10.0, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"name": name, "ns": ns, "argv": argv, "files": files or {},
                 "secret_files": pulumi.Output.secret(secret_files or {}), "env": env or {},
                 "ready_port": ready_port, "ready_timeout": ready_timeout,
                 "pid": None, "start_time": None, "dir": None}
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["secret_files"]))
        super().__init__(DaemonProvider(), resource_name, props, opts)
