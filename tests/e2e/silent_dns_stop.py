#!/usr/bin/env python3
"""A nameserver that reads queries and never answers: prints each query's
name (lower case, as evdns mixes the case) and flushes, for the test to
wait on. Usage: silent_dns_stop.py ADDR PORT"""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    d, _ = s.recvfrom(2048)
    i, labels = 12, []
    while i < len(d) and d[i] and d[i] < 64:
        n = d[i]
        labels.append(d[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    print("query", ".".join(labels).lower(), flush=True)
