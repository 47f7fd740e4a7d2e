"""The filter table in nftables: one table, two verdict maps, one lookup per packet.

Where enforcement happens:

- Routed traffic (raw forwarding, a native-attached network behind an edge)
  is filtered in the kernel by the table `apply()` installs, hooked at
  `forward`. At a connector that intercepts with TPROXY, hook it at `input`:
  TPROXY keeps the original destination in the packet, so the same table sees
  the application's real 5-tuple before the agent's socket accepts it (pass
  `mark=` to restrict the table to intercepted packets and leave the agent's
  own ports alone). This is connector ingress enforcement.
- Streams carried inside TLS are invisible to nftables on the far edge, so the
  far edge's egress check runs in user space with `verdict_for()` on the
  stream's original 5-tuple before it dials the destination; it uses the very
  same compiled tree as the kernel maps (see `filter_compile`), so the two
  cannot disagree.

Table layout (family inet, IPv4 policy; IPv6 gets the default verdict):

    chain filter_hook  ct state established,related accept
                    tcp/udp: ip saddr . ip daddr . l4proto . th dport vmap @ports
                    tcp/udp: goto verdict_default
                    other:   ip saddr . ip daddr . l4proto vmap @noports
                    goto verdict_default
    chain rule_<i>  counter name "<rule name>"; accept | log + reject
    chain verdict_default  counter name "default"; accept | log + reject

The maps hold disjoint interval elements, each pointing at the chain of the
first rule that covers it, so the per-packet cost is one map lookup and one
jump whatever the number of rules. Only new connections are judged; replies
ride conntrack. A denied TCP connection gets a TCP reset at once, anything else
an ICMP administratively-prohibited, and every deny is logged with the rule
name in the log prefix (kernel log, and NFLOG group LOG_GROUP for the agent's
flow log: see `denylog`) and counted.
"""
from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address
from typing import Any, Literal

from dataplane.filter_compile import NO_MATCH, Box, CompiledPolicy, compile_policy, compiled_for, gc_paused
from dataplane.filter_model import DEFAULT_RULE, Action, FilterPolicy, FilterRule

Hook = Literal["input", "forward", "output"]
FAMILY = "inet"
HOOK_CHAIN = "filter_hook"
DEFAULT_CHAIN = "verdict_default"
PORTS_MAP = "ports"
NOPORTS_MAP = "noports"
LOG_PREFIX = "transit.deny"
# NFLOG group the deny chains also log to; `denylog.DenyListener` reads it back into the flow log.
LOG_GROUP = 4643
LOG_RATE = 1000  # denied packets logged per second (kernel log and NFLOG), after a burst of LOG_BURST; the counters count all
LOG_BURST = 5000


class FilterTableError(RuntimeError):
    """nft refused a change; the running table is left as it was."""


def verdict_for(
    policy: FilterPolicy | CompiledPolicy,
    src_ip: str | IPv4Address,
    dst_ip: str | IPv4Address,
    proto: str | int,
    port: int | None,
) -> tuple[Action, str | None]:
    """User-space check for streams nftables cannot see (far-edge egress).

    Same answer as `FilterPolicy.evaluate_reference`, from the same compiled
    tree the kernel maps are made of (built once per policy object), in a few
    bisections instead of a scan.
    """
    compiled = policy if isinstance(policy, CompiledPolicy) else compiled_for(policy)
    index = compiled.lookup(src_ip, dst_ip, proto, port)
    if index == NO_MATCH:
        return compiled.policy.default, None
    rule = compiled.policy.rules[index]
    return rule.action, rule.name


def ruleset(policy: FilterPolicy | CompiledPolicy, *, table: str, hook: Hook, priority: int = 0, mark: int | None = None) -> dict[str, Any]:
    """The nftables JSON document that atomically replaces `table` with `policy`."""
    with gc_paused():
        return _ruleset(policy, table=table, hook=hook, priority=priority, mark=mark)


def _ruleset(policy: FilterPolicy | CompiledPolicy, *, table: str, hook: Hook, priority: int, mark: int | None) -> dict[str, Any]:
    compiled = policy if isinstance(policy, CompiledPolicy) else compiled_for(policy)
    rules = compiled.policy.rules
    commands: list[dict[str, Any]] = [
        {"add": {"table": {"family": FAMILY, "name": table}}},
        {"delete": {"table": {"family": FAMILY, "name": table}}},
        {"add": {"table": {"family": FAMILY, "name": table}}},
    ]
    for name in [*(rule.name for rule in rules), DEFAULT_RULE]:
        commands.append({"add": {"counter": {"family": FAMILY, "table": table, "name": name}}})
    for name, key_type in ((PORTS_MAP, ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"]), (NOPORTS_MAP, ["ipv4_addr", "ipv4_addr", "inet_proto"])):
        commands.append({"add": {"map": {"family": FAMILY, "table": table, "name": name, "type": key_type, "map": "verdict", "flags": ["interval"]}}})
    for index in range(len(rules)):
        commands.append({"add": {"chain": {"family": FAMILY, "table": table, "name": _rule_chain(index)}}})
    commands.append({"add": {"chain": {"family": FAMILY, "table": table, "name": DEFAULT_CHAIN}}})
    commands.append({"add": {"chain": {"family": FAMILY, "table": table, "name": HOOK_CHAIN, "type": "filter", "hook": hook, "prio": priority, "policy": "accept"}}})
    for index, rule in enumerate(rules):
        commands.extend(_verdict_rules(table, _rule_chain(index), rule.name, rule.action))
    commands.extend(_verdict_rules(table, DEFAULT_CHAIN, DEFAULT_RULE, compiled.policy.default))
    commands.extend(_hook_rules(table, mark))
    for name, elements in ((PORTS_MAP, compiled.port_elements()), (NOPORTS_MAP, compiled.noport_elements())):
        if elements:
            elem = [[{"concat": _key(box)}, {"goto": {"target": _rule_chain(index)}}] for box, index in elements]
            commands.append({"add": {"element": {"family": FAMILY, "table": table, "name": name, "elem": elem}}})
    return {"nftables": commands}


def apply(policy: FilterPolicy | CompiledPolicy, *, table: str, hook: Hook, netns: str | None = None, priority: int = 0, mark: int | None = None) -> None:
    """Replace `table` with `policy` in one nft transaction.

    A policy that fails validation or compilation raises before the kernel is
    touched; one the kernel refuses raises FilterTableError and the transaction
    is rolled back, so the running table stays as it was in both cases.
    """
    _run_nft(ruleset(policy, table=table, hook=hook, priority=priority, mark=mark), netns=netns)


def remove(table: str, netns: str | None = None) -> None:
    """Delete `table` if it exists (add-then-delete keeps this one idempotent transaction)."""
    _run_nft({"nftables": [
        {"add": {"table": {"family": FAMILY, "name": table}}},
        {"delete": {"table": {"family": FAMILY, "name": table}}},
    ]}, netns=netns)


def read_counters(table: str, netns: str | None = None) -> dict[str, tuple[int, int]]:
    """{rule name: (packets, bytes)}, with the default verdict under "default"."""
    output = _nft(["-j", "list", "counters", "table", FAMILY, table], netns=netns)
    counters: dict[str, tuple[int, int]] = {}
    for item in json.loads(output)["nftables"]:
        if "counter" in item:
            counter = item["counter"]
            counters[counter["name"]] = (int(counter["packets"]), int(counter["bytes"]))
    return counters


def _rule_chain(index: int) -> str:
    return f"rule_{index}"


def _verdict_rules(table: str, chain: str, counter: str, action: Action) -> list[dict[str, Any]]:
    """Count, then accept; or count, log and refuse at once (TCP reset, else ICMP)."""
    exprs: list[list[dict[str, Any]]]
    if action == "permit":
        exprs = [[{"counter": counter}, {"accept": None}]]
    else:
        prefix = f"{LOG_PREFIX} rule={counter} "
        exprs = [
            # Every packet is counted; only LOG_RATE a second (after a burst) reach the kernel log and NFLOG,
            # so a flood cannot make the agent parse and log without bound. The rest are still refused below.
            [{"counter": counter}, {"limit": {"rate": LOG_RATE, "per": "second", "burst": LOG_BURST}},
             {"log": {"prefix": prefix}}, {"log": {"prefix": prefix, "group": LOG_GROUP}}],
            [_match({"meta": {"key": "l4proto"}}, "tcp"), {"reject": {"type": "tcp reset"}}],
            [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}],
        ]
    return [{"add": {"rule": {"family": FAMILY, "table": table, "chain": chain, "expr": expr}}} for expr in exprs]


def _hook_rules(table: str, mark: int | None) -> list[dict[str, Any]]:
    """The base chain: conntrack shortcut, then one map lookup per packet."""
    l4proto = {"meta": {"key": "l4proto"}}
    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    daddr = {"payload": {"protocol": "ip", "field": "daddr"}}
    dport = {"payload": {"protocol": "th", "field": "dport"}}
    tcp_udp = {"set": ["tcp", "udp"]}
    to_default = {"goto": {"target": DEFAULT_CHAIN}}
    exprs: list[list[dict[str, Any]]] = []
    if mark is not None:
        exprs.append([{"match": {"op": "!=", "left": {"meta": {"key": "mark"}}, "right": mark}}, {"accept": None}])
    exprs += [
        [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": None}],
        [{"match": {"op": "!=", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}}, to_default],
        [_match(l4proto, tcp_udp), {"vmap": {"key": {"concat": [saddr, daddr, l4proto, dport]}, "data": f"@{PORTS_MAP}"}}],
        [_match(l4proto, tcp_udp), to_default],
        [{"vmap": {"key": {"concat": [saddr, daddr, l4proto]}, "data": f"@{NOPORTS_MAP}"}}],
        [to_default],
    ]
    return [{"add": {"rule": {"family": FAMILY, "table": table, "chain": HOOK_CHAIN, "expr": expr}}} for expr in exprs]


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _key(box: Box) -> list[Any]:
    """A map key: addresses as prefix or range, protocol and port as value or range."""
    src, dst, *rest = box
    return [_address(src), _address(dst), *(_number(interval) for interval in rest)]


def _address(interval: tuple[int, int]) -> Any:
    low, high = interval
    if low == high:
        return _dotted(low)
    size = high - low + 1
    if size & (size - 1) == 0 and low % size == 0:
        return {"prefix": {"addr": _dotted(low), "len": 33 - size.bit_length()}}
    return {"range": [_dotted(low), _dotted(high)]}


def _dotted(value: int) -> str:
    """Dotted quad of an address integer (ipaddress objects cost too much per element)."""
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _number(interval: tuple[int, int]) -> Any:
    low, high = interval
    return low if low == high else {"range": [low, high]}


def _nft(args: list[str], *, netns: str | None, stdin: str | None = None) -> str:
    command = ["nft", *args]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FilterTableError(f"nft {' '.join(args)} failed: {result.stderr.strip()[:2000]}")
    return result.stdout


def _run_nft(document: dict[str, Any], *, netns: str | None) -> None:
    """Send one JSON document to `nft -j -f -`: a single atomic transaction."""
    _nft(["-j", "-f", "-"], netns=netns, stdin=json.dumps(document, separators=(",", ":")))


__all__ = [
    "FilterPolicy",
    "FilterRule",
    "FilterTableError",
    "apply",
    "compile_policy",
    "read_counters",
    "remove",
    "ruleset",
    "verdict_for",
]
