"""The local layout and the FRR/ExaBGP configs, against golden files.

Regenerate the golden files after an intended change with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/local -q` and review the diff.
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from components import load_spec
from components.local import exabgp_config, frr_config
from components.local.layout import MAX_FRR_NAME_LEN, MAX_PREFIX_LEN, Layout, build_layout, frr_instance_name, name_prefix

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
FABRICS = ["architecture_example", "seed000_aws_azure", "seed004_dx_er_cloud_router"]


def _layout(fabric: str) -> Layout:
    return build_layout(load_spec(ROOT / "stacks" / "fabrics" / f"{fabric}.yaml"), "t")


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize("fabric", FABRICS)
def test_layout_matches_golden(fabric: str) -> None:
    # defaults left out: a new AgentConfig field with a default is not a layout change
    _golden(f"{fabric}.layout.json", _layout(fabric).model_dump_json(indent=1, exclude_defaults=True) + "\n")


@pytest.mark.parametrize("fabric", FABRICS)
def test_router_configs_match_golden(fabric: str) -> None:
    layout = _layout(fabric)
    text = "".join(f"### {r.ns}\n{frr_config.render(r.config)}" for r in layout.routers)
    text += "".join(f"### {s.ns} exabgp\n{exabgp_config.render(s, '<md5>')}" for s in layout.exabgp)
    _golden(f"{fabric}.routers.conf", text)


@pytest.mark.parametrize("fabric", FABRICS)
def test_every_link_end_is_unique_and_fits_the_kernel(fabric: str) -> None:
    layout = _layout(fabric)
    names = {ns.name for ns in layout.namespaces}
    ends = [(l.ns_a, l.if_a) for l in layout.links] + [(l.ns_b, l.if_b) for l in layout.links]
    assert len(ends) == len(set(ends)), "an interface name is used twice in one namespace"
    assert all(len(ifname) <= 15 for _, ifname in ends)
    assert {ns for ns, _ in ends} <= names
    assert len(names) == len(layout.namespaces)


@pytest.mark.parametrize("fabric", FABRICS)
def test_addresses_are_unique_and_link_ends_share_a_subnet(fabric: str) -> None:
    layout = _layout(fabric)
    addresses = []
    for link in layout.links:
        if link.addr_a and link.addr_b:
            a, b = ipaddress.IPv4Interface(link.addr_a), ipaddress.IPv4Interface(link.addr_b)
            assert a.network == b.network, link.key
        addresses += [a for a in (link.addr_a, link.addr_b) if a]
    addresses += [ns.bridge.address for ns in layout.namespaces if ns.bridge]
    ips = [ipaddress.IPv4Interface(a).ip for a in addresses]
    assert len(ips) == len(set(ips))


def test_seed004_circuits_use_the_seed_addresses_and_shaping() -> None:
    layout = _layout("seed004_dx_er_cloud_router")
    circuits = {l.key: l for l in layout.links if l.kind == "circuit"}
    assert {(l.addr_a, l.addr_b, l.rate_mbps) for l in circuits.values()} >= {
        ("10.0.0.0/31", "10.0.0.1/31", 50), ("10.0.0.13/30", "10.0.0.14/30", 50)}
    cloud_router = next(r for r in layout.routers if r.ns == "t-cr")
    assert cloud_router.config.asn == 65000
    assert {(n.address, n.remote_asn) for n in cloud_router.config.neighbors} >= {("10.0.0.1", 64512), ("10.0.0.14", 12076)}


def test_policy_tests_become_flows_between_hosts_serving_the_ports() -> None:
    layout = _layout("architecture_example")
    hosts = {h.address: h for h in layout.hosts}
    assert [(f.src, f.dst, f.port, f.expect) for f in layout.flows] == [
        ("10.30.40.10", "172.18.40.10", 5432, "permit"), ("10.30.40.10", "172.18.40.10", 22, "deny")]
    assert hosts["172.18.40.10"].ports == [22, 5432]


def test_no_secret_value_is_ever_in_a_rendered_frr_config() -> None:
    layout = _layout("architecture_example")
    for router in layout.routers:
        text = frr_config.render(router.config)
        keys = frr_config.secret_keys(text)
        assert keys and all(frr_config.placeholder(k) in text for k in keys)
        filled = frr_config.fill_secrets(text, {k: f"value-of-{k}" for k in keys})
        assert "{{secret:" not in filled and all(f"password value-of-{k}" in filled for k in keys)
        with pytest.raises(KeyError, match=keys[0]):
            frr_config.fill_secrets(text, {})


def test_name_prefix_is_short_and_distinct_per_stack() -> None:
    assert name_prefix("acme", "local") == "acme-local"
    long_a = name_prefix("a-very-long-fabric-name", "e2e-0123456789")
    long_b = name_prefix("a-very-long-fabric-name", "e2e-9876543210")
    assert len(long_a) <= MAX_PREFIX_LEN and long_a != long_b


def test_agent_files_live_where_the_daemon_provider_writes_them() -> None:
    from components.local import layout as layout_module
    from components.local.daemon_provider import RUN_ROOT

    assert layout_module.RUN_ROOT == str(RUN_ROOT)
    agent = _layout("seed000_aws_azure").agents[0]
    assert str(agent.config.tls.key) == f"{RUN_ROOT}/{agent.name}/node.key"


def test_frr_names_fit_unix_socket_paths_even_for_long_spec_names() -> None:
    long_ns = "acme-local-g-" + "c" * 63
    name = frr_instance_name(long_ns)
    assert len(name) <= MAX_FRR_NAME_LEN and len(f"/var/run/frr/{name}/watchfrr.vty") < 108
    assert name != frr_instance_name(long_ns[:-1] + "d")
    assert frr_instance_name("acme-local-cr") == "acme-local-cr"
