"""A tiny app for the local hosts: answers HTTP on every port a policy test names.

Run as `python -m components.local.app_server --bind ADDR --port 5432 --port 22`.
The reply names the address and port that answered, so a flow check (or a
user with curl) can see which host the fabric delivered the connection to.
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


async def _main(bind: str, ports: list[int]) -> None:
    servers = [await _serve(bind, port) for port in ports]
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, action="append", required=True)
    args = parser.parse_args()
    asyncio.run(_main(args.bind, args.port))


if __name__ == "__main__":
    main()
