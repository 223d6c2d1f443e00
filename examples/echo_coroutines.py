"""The seed's echo server with coroutines: one thread, asyncio's streams,
on tress's event loop (epoll underneath, as in echo_selectors.py).

The one-line migration: `from asyncio import run` becomes
`from tress.asyncio import run` (asyncio's API is unchanged).
"""

import asyncio

from tress.asyncio import run

CLIENTS, MESSAGES = 50, 20


async def serve(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def client(port, k):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    echoed = 0
    for i in range(MESSAGES):
        msg = f"client {k} message {i}\n".encode()
        writer.write(msg)
        echoed += await reader.readexactly(len(msg)) == msg
    writer.close()
    await writer.wait_closed()
    return echoed


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results = await asyncio.wait_for(asyncio.gather(*(client(port, k) for k in range(CLIENTS))), 60)
    server.close()
    await server.wait_closed()
    loop = type(asyncio.get_running_loop()).__module__
    print(f"coroutines ({loop}): {CLIENTS} clients x {MESSAGES} messages, {sum(results)} echoed")


if __name__ == "__main__":
    run(main())
