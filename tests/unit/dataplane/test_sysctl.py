"""Sysctls: applied where they differ, restored exactly."""
from __future__ import annotations

from pathlib import Path

from dataplane import sysctl


def test_apply_changes_only_what_differs_and_restore_puts_it_back(tmp_path: Path) -> None:
    settings = {"net.ipv4.tcp_rmem": ("4096 131072 16777216", "why"), "net.core.somaxconn": ("4096", "why")}
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/core").mkdir(parents=True)
    (tmp_path / "net/ipv4/tcp_rmem").write_text("4096\t131072\t6291456\n")
    (tmp_path / "net/core/somaxconn").write_text("4096\n")
    previous = sysctl.apply(settings, root=tmp_path)
    assert previous == {"net.ipv4.tcp_rmem": "4096 131072 6291456"}
    assert sysctl.read("net.ipv4.tcp_rmem", root=tmp_path) == "4096 131072 16777216"
    sysctl.restore(previous, root=tmp_path)
    assert sysctl.read("net.ipv4.tcp_rmem", root=tmp_path) == "4096 131072 6291456"


def test_every_required_setting_says_why() -> None:
    assert all(why for _value, why in sysctl.REQUIRED.values())
