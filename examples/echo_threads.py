"""The seed's echo server, one thread per client (a pool of them), with
many clients at once; the same server with selectors and with coroutines
is in echo_selectors.py and echo_coroutines.py.

The one-line migration: `from concurrent import futures` becomes
`from tress import futures`.
"""

import socket

from tress import futures

CLIENTS, MESSAGES = 50, 20


def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def client(port, k):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        echoed = 0
        for i in range(MESSAGES):
            msg = f"client {k} message {i}\n".encode()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += s.recv(65536)
            echoed += got == msg
        return echoed


def main():
    with socket.create_server(("127.0.0.1", 0)) as server, \
            futures.ThreadPoolExecutor(CLIENTS) as handlers, \
            futures.ThreadPoolExecutor(CLIENTS) as clients:
        port = server.getsockname()[1]
        results = [clients.submit(client, port, k) for k in range(CLIENTS)]
        for _ in range(CLIENTS):
            handlers.submit(serve, server.accept()[0])
        echoed = sum(f.result(timeout=60) for f in results)
    print(f"threads: {CLIENTS} clients x {MESSAGES} messages, {echoed} echoed")


if __name__ == "__main__":
    main()
