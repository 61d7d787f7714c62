"""The web application of notebook 11 (the WAS): count a visit in the key-value store,
queue an event for it, answer with the replica's own hostname.

It speaks both servers' wire protocols over a plain socket - RESP for redis,
beanstalkd's line protocol - so no client library has to be in the image.
Environment: PORT (8000), KV_HOST (kv), QUEUE_HOST (queue).
"""
import os
import socket
import threading

HOSTNAME = socket.gethostname()
PORT = int(os.environ.get("PORT", "8000"))
KV = (os.environ.get("KV_HOST", "kv"), 6379)
QUEUE = (os.environ.get("QUEUE_HOST", "queue"), 11300)


def ask(address, request):
    """Send one request, read one reply line (both servers end a short reply with CRLF)."""
    with socket.create_connection(address, timeout=5) as server:
        server.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = server.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.decode().strip()


def resp(*words):
    """A redis command as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def count_visit():
    reply = ask(KV, resp("INCR", "visits"))
    if not reply.startswith(":"):
        raise OSError("redis said " + reply)
    return int(reply[1:])


def queue_event(text):
    body = text.encode()
    reply = ask(QUEUE, b"put 0 0 60 %d\r\n%s\r\n" % (len(body), body))
    if not reply.startswith("INSERTED"):
        raise OSError("beanstalkd said " + reply)
    return int(reply.split()[1])


def answer(path):
    if path == "/health":
        return "200 OK", HOSTNAME + "\n"
    try:
        visits = count_visit()
        event = queue_event("visit %d served by %s" % (visits, HOSTNAME))
    except OSError as err:
        return "503 Service Unavailable", "served_by=%s error=%s\n" % (HOSTNAME, err)
    return "200 OK", "served_by=%s visits=%d event=%d\n" % (HOSTNAME, visits, event)


def serve(client):
    with client:
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                return
            request += chunk
        words = request.split(b"\r\n", 1)[0].split()
        status, body = answer(words[1].decode() if len(words) > 1 else "/")
        data = body.encode()
        client.sendall(b"HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                       b"X-Served-By: %s\r\nConnection: close\r\n\r\n%s"
                       % (status.encode(), len(data), HOSTNAME.encode(), data))


def main():
    listener = socket.create_server(("0.0.0.0", PORT), backlog=64)
    print("%s listening on port %d, kv at %s, queue at %s" % (HOSTNAME, PORT, KV[0], QUEUE[0]), flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
