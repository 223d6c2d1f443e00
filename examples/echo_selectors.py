"""The seed's echo server with IO multiplexing: one thread, `selectors`
(epoll) watching the listening socket and every client at once. The
clients are threads, started and counted with tress's `threading`.

The one-line migration: `import threading` becomes
`from tress import threading`.
"""

import selectors
import socket

from tress import threading

CLIENTS, MESSAGES = 50, 20


def client(port, k, echoed, lock):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        for i in range(MESSAGES):
            msg = f"client {k} message {i}\n".encode()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += s.recv(65536)
            with lock:
                echoed[0] += got == msg


def main():
    sel, echoed, lock = selectors.DefaultSelector(), [0], threading.Lock()
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    sel.register(server, selectors.EVENT_READ)
    port = server.getsockname()[1]
    threads = [threading.Thread(target=client, args=(port, k, echoed, lock)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    served = 0
    while served < CLIENTS:
        for key, _ in sel.select(timeout=30):
            if key.fileobj is server:
                conn, _ = server.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
            elif data := key.fileobj.recv(65536):
                key.fileobj.sendall(data)  # small messages: the send buffer has room
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                served += 1
    for t in threads:
        t.join(30)
    print(f"selectors: {CLIENTS} clients x {MESSAGES} messages, {echoed[0]} echoed")


if __name__ == "__main__":
    main()
