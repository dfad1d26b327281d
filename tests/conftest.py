"""Shared fixtures. Every test runs with the network blocked (loopback allowed)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "examples"
BOOKS = Path(__file__).resolve().parent / "data"


def _is_local(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guard(sock: socket.socket, address: object) -> None:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return
        host = address[0] if isinstance(address, tuple) else address
        if not _is_local(host):
            msg = f"tests may not use the network (tried {address!r})"
            raise RuntimeError(msg)

    def connect(sock: socket.socket, address: object) -> None:
        guard(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        guard(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if host is not None and not _is_local(host):
            msg = f"tests may not resolve {host!r}"
            raise RuntimeError(msg)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="session")
def frankenstein() -> str:
    return (BOOKS / "frankenstein.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def pride() -> str:
    return (DATA / "pride_and_prejudice.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def kalevala() -> str:
    return (BOOKS / "kalevala.txt").read_text(encoding="utf-8")
