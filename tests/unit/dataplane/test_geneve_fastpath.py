"""The GENEVE fast path's C program against the same golden packets as `packet.py`, run in the kernel.

`BPF_PROG_TEST_RUN` (libbpf's `bpf_prog_test_run_opts`) runs `geneve_in` on a
frame without attaching it anywhere: every packet `packet.parse` accepts must
come out decapsulated (the Ethernet header, then the inner packet) with its
flow learned under `packet.flow_key`'s key and the header as it came, and
every packet it refuses must come out unchanged for the user-space worker.
`geneve_out` is not run here: the test run always hands a tc program an
Ethernet frame, and the TUN's egress has none; the integration tests
(tests/integration/test_dataplane_geneve.py) carry its replies.

Needs root and a kernel that loads eBPF; skipped otherwise, or when
tools/build-bpf.sh has not built the object.
"""
from __future__ import annotations

import ctypes
import os
import random
import re
import socket
import struct
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dataplane.geneve import fastpath
from dataplane.geneve.fastpath import OBJECT, BpfObject, FastPathError, FastPathPlan
from dataplane.geneve.packet import Malformed, flow_key, parse
from tests.unit.dataplane.test_geneve_packet import GOLDEN, INNER_SYN, MALFORMED

SOURCE = Path(fastpath.__file__).parent / "bpf" / "geneve.bpf.c"
GWLB, NODE = "10.30.41.1", "10.30.41.2"
TC_ACT_OK = 0


def test_the_counter_names_are_the_c_programs_in_order():
    enum = re.search(r"enum counter \{(.*?)\};", SOURCE.read_text(), re.S)
    assert enum is not None
    names = [name.removeprefix("C_").lower() for name in re.findall(r"^\s*(C_[A-Z_]+)", enum.group(1), re.M)]
    assert names == [*fastpath.COUNTERS, "max"]
    assert f"#define MAX_CIDRS {fastpath.MAX_CIDRS}" in SOURCE.read_text()


def test_the_config_value_has_the_c_structs_layout():
    plan = FastPathPlan(3, "transit-gnv", IPv4Address(NODE), (IPv4Network("10.30.41.0/24"),), 8500, 0x4D45, 100, 350.0)
    value = plan.config_bytes()
    assert len(value) == 96  # struct config, as the verifier reports it (vs=96)
    assert value[:4] == socket.inet_aton(NODE) and value[28:32] == socket.inet_aton("10.30.41.0") and value[60:64] == socket.inet_aton("255.255.255.0")


class _TestRun(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p), ("data_size_in", ctypes.c_uint32),
                ("data_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


@pytest.fixture(scope="module")
def loaded() -> BpfObject:
    if os.geteuid() != 0 or not OBJECT.is_file():
        pytest.skip("needs root and dataplane/geneve/bpf/geneve.bpf.o (tools/build-bpf.sh)")
    try:
        obj = BpfObject(flow_limit=4096)
    except FastPathError as exc:
        pytest.skip(f"this kernel does not load it: {exc}")
    plan = FastPathPlan(1, "transit-gnv", IPv4Address(NODE), (IPv4Network("10.30.41.0/24"),), 8500, 0x4D45, 4096, 350.0)
    obj.update("geneve_config", struct.pack("=I", 0), plan.config_bytes())
    obj.lib.bpf_prog_test_run_opts.restype, obj.lib.bpf_prog_test_run_opts.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]
    yield obj
    obj.close()


def _frame(payload: bytes, *, source: str = GWLB) -> bytes:
    """Ethernet, IPv4 and UDP to the node's 6081 around a GENEVE payload."""
    udp = struct.pack("!HHHH", 50000, 6081, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0x4000, 64, 17, 0, socket.inet_aton(source), socket.inet_aton(NODE))
    return bytes.fromhex("020000000002" "020000000001" "0800") + ip + udp + payload


def _run(obj: BpfObject, frame: bytes) -> tuple[int, bytes]:
    out = ctypes.create_string_buffer(len(frame) + 256)
    data = ctypes.create_string_buffer(frame, len(frame))
    opts = _TestRun(sz=ctypes.sizeof(_TestRun), data_in=ctypes.addressof(data), data_out=ctypes.addressof(out), data_size_in=len(frame),
                    data_size_out=len(out), repeat=1)
    assert obj.lib.bpf_prog_test_run_opts(obj.prog["geneve_in"], ctypes.byref(opts)) == 0, os.strerror(ctypes.get_errno())
    return opts.retval, out.raw[:opts.data_size_out]


def _agrees(obj: BpfObject, payload: bytes, *, source: str = GWLB) -> str:
    """Run the program on `payload` and check it against `packet.parse`; the outcome."""
    frame = _frame(payload, source=source)
    retval, out = _run(obj, frame)
    assert retval == TC_ACT_OK
    try:
        packet = parse(payload, len(payload))
    except Malformed:
        assert out == frame  # up to the worker, unchanged
        return "up"
    if source != GWLB:
        assert out == frame
        return "up"
    assert out == frame[:14] + payload[packet.header_len:]  # decapsulated: the inner packet behind the same Ethernet header
    learned = obj.flows(4096)
    assert learned[packet.key] == (source, NODE, payload[:packet.header_len])
    return "decapsulated"


def test_the_golden_packet_is_decapsulated_and_its_flow_learned(loaded: BpfObject):
    before = loaded.counts()
    assert _agrees(loaded, GOLDEN) == "decapsulated"
    key = flow_key(INNER_SYN, 0, len(INNER_SYN))
    assert key in loaded.flows(4096)
    after = loaded.counts()
    assert after["decapsulated"] == before["decapsulated"] + 1


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_every_packet_parse_refuses_goes_up_unchanged(loaded: BpfObject, data: bytes, reason: str):
    before = loaded.counts()["up_malformed"]
    assert _agrees(loaded, data) == "up"
    assert loaded.counts()["up_malformed"] == before + 1, reason


def test_geneve_from_outside_the_load_balancers_subnets_goes_up(loaded: BpfObject):
    before = loaded.counts()["up_foreign_source"]
    assert _agrees(loaded, GOLDEN, source="10.30.40.10") == "up"
    assert loaded.counts()["up_foreign_source"] == before + 1


def test_random_and_mutated_packets_agree_with_packet_parse(loaded: BpfObject):
    rng = random.Random(13)
    outcomes = set()
    for _ in range(3000):
        data = bytearray(GOLDEN)
        for _flip in range(rng.randrange(0, 3)):
            position = rng.randrange(len(data))
            data[position] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data) + 1)]
        outcomes.add(_agrees(loaded, bytes(data)))
    assert outcomes == {"up", "decapsulated"}
