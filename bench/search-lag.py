"""Commit → searchable lag of a Meilisearch index kept by Basalt: inserts
rows through /rest/v1 at a steady rate (each acknowledged after its commit)
and polls Meilisearch for each new document until it is there.

    python3 bench/search-lag.py BASALT_URL ANON_KEY MEILI_URL MEILI_KEY FIRST_ID
"""
import base64
import json
import sys
import threading
import time
import urllib.error
import urllib.request

basalt, anon, meili, meili_key, first = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
RATE, SECONDS = 50, 20


def document_id(key):
    # Basalt's id of a row: "k" + base64url (no padding) of the JSON array of its key.
    text = json.dumps([key], separators=(",", ":"))
    return "k" + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def visible(key):
    request = urllib.request.Request(
        f"{meili}/indexes/notes/documents/{document_id(key)}",
        headers={"Authorization": f"Bearer {meili_key}"},
    )
    try:
        urllib.request.urlopen(request).read()
        return True
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


lags = []
lock = threading.Lock()


def watch(key, committed):
    while not visible(key):
        time.sleep(0.005)
    with lock:
        lags.append(time.monotonic() - committed)


threads = []
start = time.monotonic()
for n in range(RATE * SECONDS):
    key = first + 1 + n
    body = json.dumps({"id": key, "title": "lag probe", "body": "w1 w2", "category": "c0"}).encode()
    request = urllib.request.Request(
        f"{basalt}/rest/v1/notes", data=body, method="POST",
        headers={"Content-Type": "application/json", "apikey": anon},
    )
    urllib.request.urlopen(request).read()
    thread = threading.Thread(target=watch, args=(key, time.monotonic()))
    thread.start()
    threads.append(thread)
    delay = start + (n + 1) / RATE - time.monotonic()
    if delay > 0:
        time.sleep(delay)
for thread in threads:
    thread.join()
lags.sort()
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000
print(
    f"Commit → searchable lag at {RATE} writes/s for {SECONDS} s ({len(lags)} inserts through /rest/v1, "
    f"each polled in Meilisearch every 5 ms): p50 {pick(0.50):.0f} ms, p99 {pick(0.99):.0f} ms, max {lags[-1] * 1000:.0f} ms."
)
