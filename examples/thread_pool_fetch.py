"""Fetch pages concurrently through a thread pool from an HTTP server the
example starts on 127.0.0.1 (free port, 10 ms a page) and stops at the end;
every socket operation and wait has a timeout.  The one-line migration:
`from concurrent import futures` becomes `from tress import futures`."""

import http.server
import threading
import time
import urllib.request

from tress import futures

PAGES = 200
WORKERS = 16
TIMEOUT = 10  # seconds, for every socket operation and every wait


def page(n):
    return f"page {n}\n".encode() * (n % 10 + 1)


class Handler(http.server.BaseHTTPRequestHandler):
    timeout = TIMEOUT  # on the server's sockets

    def do_GET(self):
        time.sleep(0.01)  # a slow server: the fetches overlap in the pool
        self.send_response(200)
        self.end_headers()
        self.wfile.write(page(int(self.path.lstrip("/"))))

    def log_message(self, *args):  # quiet
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 64  # a listen backlog for every worker at once


def fetch(url):
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return response.read()


def main():
    with Server(("127.0.0.1", 0), Handler) as server:  # closed at the end
        serving = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        serving.start()
        urls = [f"http://127.0.0.1:{server.server_port}/{n}" for n in range(PAGES)]
        with futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
            bodies = list(pool.map(fetch, urls, timeout=6 * TIMEOUT))
        server.shutdown()  # serve_forever returns
        serving.join(TIMEOUT)
    assert bodies == [page(n) for n in range(PAGES)], "a page came back wrong"
    print(f"fetched {len(bodies)} pages, {sum(map(len, bodies))} bytes, "
          f"{WORKERS} workers")

if __name__ == "__main__":
    main()
