"""A tiny app for the local hosts: answers HTTP on every TCP port and echoes on every UDP port a policy test names.

Run as `python -m components.local.app_server --bind ADDR --port 5432 --port 22 --udp-port 5001`.
The HTTP reply names the address and port that answered, so a flow check (or
a user with curl) can see which host the fabric delivered the connection to;
a UDP datagram comes back unchanged (what `transit local-check` sends and
compares). ICMP echo needs no server: the host's kernel answers.
"""
from __future__ import annotations

import argparse
import asyncio


async def _serve(bind: str, port: int) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.read(4096), timeout=2)
        except asyncio.TimeoutError:
            pass
        peer = writer.get_extra_info("peername")
        body = f"app {bind}:{port} answered {peer[0]}\n".encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, bind, port, reuse_address=True)


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def _main(bind: str, ports: list[int], udp_ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    for port in udp_ports:
        await loop.create_datagram_endpoint(_UdpEcho, local_addr=(bind, port))
    servers = [await _serve(bind, port) for port in ports]
    await asyncio.gather(*(server.serve_forever() for server in servers), asyncio.Event().wait())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, action="append", default=[])
    parser.add_argument("--udp-port", type=int, action="append", default=[])
    args = parser.parse_args()
    if not args.port and not args.udp_port:
        parser.error("give at least one --port or --udp-port")
    asyncio.run(_main(args.bind, args.port, args.udp_port))


if __name__ == "__main__":
    main()
