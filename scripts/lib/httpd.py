"""Static file server for the demo and e2e topologies: python3 httpd.py ADDR PORT DIR.

http.server's own `python3 -m http.server` calls socket.getfqdn() when it binds, a reverse DNS
lookup that hangs for several seconds in a namespace without a resolver; this one skips it.
Logs one line per request to stderr, starting with the peer address (the real client IP).
"""
import functools
import http.server
import socketserver
import sys


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)  # no getfqdn()
        self.server_name, self.server_port = self.server_address[:2]


def main():
    addr, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
    with Server((addr, port), handler) as srv:
        print(f"listening on {addr}:{port}", file=sys.stderr, flush=True)
        srv.serve_forever()


if __name__ == "__main__":
    main()
