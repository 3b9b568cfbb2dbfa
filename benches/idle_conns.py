#!/usr/bin/env python3
"""Opens N idle connections to a DSF listener and reports the server's resident
memory per connection. Usage: idle_conns.py HOST:PORT PID [N]"""
import socket, struct, sys, time, json

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")

def main():
    host, port = sys.argv[1].rsplit(":", 1)
    pid, n = int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    # Warm the node (one request) so allocator pools exist before the baseline.
    s = socket.create_connection((host, int(port)))
    payload = json.dumps({"id": 1, "type": "sys.ping"}).encode()
    s.sendall(struct.pack(">I", len(payload)) + payload)
    s.recv(4096)
    s.close()
    time.sleep(0.5)
    before = rss_kib(pid)
    conns = []
    for i in range(n):
        c = socket.create_connection((host, int(port)))
        conns.append(c)
    # Each connection makes one request so its task has run at least once.
    for c in conns:
        c.sendall(struct.pack(">I", len(payload)) + payload)
    for c in conns:
        c.recv(4096)
    time.sleep(1.0)
    after = rss_kib(pid)
    per = (after - before) * 1024 / n
    print(json.dumps({"connections": n, "rss_before_kib": before, "rss_after_kib": after,
                      "bytes_per_idle_connection": round(per)}))
    for c in conns:
        c.close()

if __name__ == "__main__":
    main()
