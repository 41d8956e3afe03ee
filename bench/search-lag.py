"""Commit → searchable lag of a Meilisearch index kept by Basalt: inserts
rows through /rest/v1 at a steady rate (each acknowledged after its commit)
while one poller asks Meilisearch every 20 ms which of the pending documents
it has (one request for all of them), until every one is there.

    python3 bench/search-lag.py BASALT_URL ANON_KEY MEILI_URL MEILI_KEY FIRST_ID
"""
import base64
import json
import sys
import threading
import time
import urllib.request

basalt, anon, meili, meili_key, first = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
RATE, SECONDS = 50, 20


def document_id(key):
    # Basalt's id of a row: "k" + base64url (no padding) of the JSON array of its key.
    text = json.dumps([key], separators=(",", ":"))
    return "k" + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def present(ids):
    body = json.dumps({"filter": f"_id IN [{', '.join(ids)}]", "fields": ["_id"], "limit": len(ids)}).encode()
    request = urllib.request.Request(
        f"{meili}/indexes/notes/documents/fetch", data=body, method="POST",
        headers={"Authorization": f"Bearer {meili_key}", "Content-Type": "application/json"},
    )
    return {d["_id"] for d in json.load(urllib.request.urlopen(request))["results"]}


pending = {}  # id -> commit time
lags = []
lock = threading.Lock()
done = threading.Event()


def poll():
    while not (done.is_set() and not pending):
        with lock:
            ids = list(pending)
        if ids:
            found = present(ids)
            now = time.monotonic()
            with lock:
                for id in found:
                    lags.append(now - pending.pop(id))
        time.sleep(0.02)


poller = threading.Thread(target=poll)
poller.start()
start = time.monotonic()
for n in range(RATE * SECONDS):
    key = first + 1 + n
    body = json.dumps({"id": key, "title": "lag probe", "body": "w1 w2", "category": "c0"}).encode()
    request = urllib.request.Request(
        f"{basalt}/rest/v1/notes", data=body, method="POST",
        headers={"Content-Type": "application/json", "apikey": anon},
    )
    urllib.request.urlopen(request).read()
    with lock:
        pending[document_id(key)] = time.monotonic()
    delay = start + (n + 1) / RATE - time.monotonic()
    if delay > 0:
        time.sleep(delay)
done.set()
poller.join()
lags.sort()
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000
print(
    f"Commit → searchable lag at {RATE} writes/s for {SECONDS} s ({len(lags)} inserts through /rest/v1, "
    f"Meilisearch asked every 20 ms which have arrived): p50 {pick(0.50):.0f} ms, p99 {pick(0.99):.0f} ms, max {lags[-1] * 1000:.0f} ms."
)
