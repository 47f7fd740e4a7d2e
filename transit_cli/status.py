"""`transit status [--metrics URL]... [--netns NS]...`: each agent's health, paths and traffic at a glance.

For every agent endpoint it reads /healthz (the agent's own JSON document) and
/metrics (Prometheus text) and prints the node, its paths per peer (active,
up, RTT, loss) and its flow and byte totals. Exit 0 when every agent answered
healthy, 1 otherwise, so scripts and CI can use it as a check. With --netns
the endpoints are read from inside each named network namespace (the local
environment's agents listen on their own namespace's loopback).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

import typer

EXIT_OK = 0
EXIT_UNHEALTHY = 1
DEFAULT_URL = "http://127.0.0.1:9464"
CLONE_NEWNET = 0x40000000


def _base(url: str) -> str:
    url = url.rstrip("/")
    for suffix in ("/metrics", "/healthz"):
        url = url.removesuffix(suffix)
    return url if "://" in url else f"http://{url}"


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def in_netns(name: str, action: Callable[[], Any]) -> Any:
    """Run `action` in a thread that joined network namespace `name` (root only); return its result.

    The local environment's agents bind their metrics to loopback inside their
    own namespace, so the host reaches them only from in there.
    """
    import ctypes
    import os
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"cannot join network namespace {name}")
            finally:
                os.close(fd)
            box["value"] = action()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def read_agent(url: str, *, timeout: float = 3.0) -> dict[str, Any]:
    """{url, ok, health, metrics: {name: [(labels, value)]}, error} for one agent endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    base = _base(url)
    result: dict[str, Any] = {"url": base, "ok": False, "health": {}, "metrics": {}, "error": None}
    try:
        status, body = _get(f"{base}/healthz", timeout)
        result["health"] = json.loads(body)
        metrics_status, metrics_body = _get(f"{base}/metrics", timeout)
    except (OSError, ValueError) as exc:
        result["error"] = str(getattr(exc, "reason", exc))
        return result
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    if metrics_status == 200:
        for family in text_string_to_metric_families(metrics_body.decode()):
            for sample in family.samples:
                samples[sample.name].append((dict(sample.labels), sample.value))
    result["metrics"] = dict(samples)
    result["ok"] = status == 200 and result["health"].get("status", "ok") == "ok"
    if not result["ok"]:
        result["error"] = result["health"].get("error") or f"/healthz answered {status}"
    return result


def _sum(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **match: str) -> float:
    return sum(value for labels, value in metrics.get(name, []) if all(labels.get(k) == v for k, v in match.items()))


def _human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def _render(agent: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    health, metrics = agent["health"], agent["metrics"]
    if agent["error"] and not health:
        where = f"{agent['url']}" + (f" in netns {agent['netns']}" if agent.get("netns") else "")
        return Text(f"{where}: unreachable ({agent['error']})", style="red")
    state = Text("healthy", style="green") if agent["ok"] else Text(f"unhealthy: {agent['error']}", style="red")
    where = f"{agent['url']}" + (f" in netns {agent['netns']}" if agent.get("netns") else "")
    title = Text.assemble((f"{health.get('node', '?')}", "bold"), f" ({health.get('role', '?')}) {where} ", state)
    summary = Table.grid(padding=(0, 2))
    summary.add_row("identity", str(health.get("identity", "-")))
    summary.add_row("streams open", str(health.get("streams", _sum(metrics, "transit_streams_active"))))
    if "warm_tunnels" in health:
        summary.add_row("warm tunnels", str(health["warm_tunnels"]))
    flows = {v: _sum(metrics, "transit_flows_total", verdict=v) for v in ("permit", "deny", "error")}
    summary.add_row("flows closed", "  ".join(f"{v} {int(n)}" for v, n in flows.items()))
    summary.add_row("bytes", f"up {_human_bytes(_sum(metrics, 'transit_bytes_total', direction='up'))}  down {_human_bytes(_sum(metrics, 'transit_bytes_total', direction='down'))}")
    judged = sorted(((value, labels.get("rule", "?")) for labels, value in metrics.get("transit_filter_packets_total", [])), reverse=True)
    if judged:
        summary.add_row("filter table", "  ".join(f"{rule} {int(value)}" for value, rule in judged[:5] if value) or "no connection judged yet")
    paths = Table(title="paths", title_justify="left", box=None, pad_edge=False)
    for column in ("peer", "path", "active", "up", "rtt ms", "loss"):
        paths.add_column(column, justify="right" if column in ("rtt ms", "loss") else "left")
    active = health.get("active_paths", {})
    for peer, by_path in sorted(health.get("paths", {}).items()):
        for path, stats in sorted(by_path.items()):
            rtt = stats.get("rtt_ms")
            paths.add_row(
                peer, path, "*" if active.get(peer) == path else "",
                Text("up", style="green") if stats.get("up") else Text("down", style="red"),
                "-" if rtt is None else f"{rtt:.2f}", f"{100 * float(stats.get('loss') or 0):.0f}%",
            )
    return Group(title, summary, paths)


def status(
    metrics: list[str] = typer.Option([DEFAULT_URL], "--metrics", "-m", help="Agent metrics endpoint (repeatable). Defaults to http://127.0.0.1:9464."),
    netns: list[str] = typer.Option([], "--netns", "-n", help="Read the endpoints from inside this network namespace (repeatable; root), as the local environment's agents listen on their own loopback."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw documents as JSON instead of tables."),
    timeout: float = typer.Option(3.0, "--timeout", min=0.1, help="Seconds to wait for each endpoint. Defaults to 3."),
) -> None:
    """Show health, paths and traffic of running transit agents."""
    from rich.console import Console

    agents = []
    spaces: list[str | None] = [*netns] or [None]
    for space in spaces:
        for url in metrics:
            if space is None:
                agents.append(read_agent(url, timeout=timeout))
                continue
            try:
                agent = in_netns(space, partial(read_agent, url, timeout=timeout))
            except OSError as exc:
                agent = {"url": _base(url), "ok": False, "health": {}, "metrics": {}, "error": str(exc)}
            agent["netns"] = space
            agents.append(agent)
    if as_json:
        typer.echo(json.dumps(agents, indent=2, default=str))
    else:
        console = Console()
        for agent in agents:
            console.print(_render(agent))
            console.print()
    raise typer.Exit(EXIT_OK if all(agent["ok"] for agent in agents) else EXIT_UNHEALTHY)


def register(app: typer.Typer) -> None:
    """Add `status` to the transit app."""
    app.command("status")(status)
