"""A round-robin TCP proxy: each new connection goes to the next replica of one service.

The replicas are the addresses /etc/hosts gives the service's name, read
again for every connection: the runtime rewrites that file whenever a
container of the project starts, so replicas added by a scale-out are used
without restarting the proxy. A replica that is gone (its line stays until
the next start) refuses the connection, and the next one is tried.
Environment: BACKEND (service:port, e.g. web:8000), PORT (80).
"""
import itertools
import os
import socket
import threading

SERVICE, _, BACKEND_PORT = os.environ.get("BACKEND", "web:8000").partition(":")
PORT = int(os.environ.get("PORT", "80"))
TURN = itertools.count()


def replicas():
    found = []
    with open("/etc/hosts") as hosts:
        for line in hosts:
            words = line.split()
            if len(words) > 1 and SERVICE in words[1:] and words[0] not in found:
                found.append(words[0])
    return found


def connect_next():
    backends = replicas()
    for _ in backends:
        address = backends[next(TURN) % len(backends)]
        try:
            return address, socket.create_connection((address, int(BACKEND_PORT)), timeout=2)
        except OSError:
            continue
    return None, None


def pipe(source, target):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client):
    address, upstream = connect_next()
    if upstream is None:
        client.sendall(b"HTTP/1.0 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        client.close()
        return
    print("connection -> %s" % address, flush=True)
    back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
    back.start()
    pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main():
    listener = socket.create_server(("0.0.0.0", PORT), backlog=64)
    print("round robin over %s:%s on port %d" % (SERVICE, BACKEND_PORT, PORT), flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
