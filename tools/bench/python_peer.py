#!/usr/bin/env python3
"""A plain Python peer of the stream processor's core, for `cargo xtask bench`.

Standard library only. On a Lambda Kinesis event file it does what the core does per batch, with
no IO inside the timing: parse the event, base64-decode every record, parse and check every event
(the required fields, their types and the limits of contract v1), write the raw lines, gzip them at
level 1 and hash the object. KPL aggregates are not unpacked (they are checked as events and
fail), so the peer does a little less work than the core. Prints one JSON line: the best and the
median time in milliseconds over the runs, and the counts.

    python3 tools/bench/python_peer.py EVENT.json [--runs N]
"""

import argparse
import base64
import gzip
import hashlib
import json
import re
import statistics
import sys
import time
from datetime import datetime

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
LIMITS = {"event_id": 128, "source": 64}


def check(event):
    """The contract's checks, short of the arrival window; returns False for an invalid event."""
    if not isinstance(event, dict):
        return False
    for field in ("event_id", "event_type", "occurred_at", "source"):
        if not isinstance(event.get(field), str):
            return False
    for field, limit in LIMITS.items():
        if not 1 <= len(event[field]) <= limit:
            return False
    if not EVENT_TYPE.match(event["event_type"].lower()):
        return False
    try:
        datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    except ValueError:
        return False
    for field in ("user_id", "session_id"):
        value = event.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > 256):
            return False
    if event.get("schema_version", 1) not in (1, None):
        return False
    attributes = event.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        return False
    return True


def core(text):
    lines = []
    invalid = 0
    for record in json.loads(text)["Records"]:
        kinesis = record["kinesis"]
        data = base64.b64decode(kinesis["data"], validate=True)
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if not check(event):
            invalid += 1
            continue
        shard = record.get("eventID", "shardId-unknown:").split(":", 1)[0]
        lines.append(
            '{"shard":%s,"seq":%s,"subseq":0,"arrival":%s,"partition_key":%s,"event":%s}\n'
            % (
                json.dumps(shard),
                json.dumps(kinesis["sequenceNumber"]),
                json.dumps(str(kinesis["approximateArrivalTimestamp"])),
                json.dumps(kinesis["partitionKey"]),
                data.decode().replace("\n", " "),
            )
        )
    body = gzip.compress("".join(lines).encode(), compresslevel=1, mtime=0)
    return len(lines), invalid, hashlib.sha256(body).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("event")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with open(args.event, "rb") as f:
        text = f.read()
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        valid, invalid, _ = core(text)
        times.append((time.perf_counter() - started) * 1e3)
    print(
        json.dumps(
            {
                "best_ms": round(min(times), 2),
                "median_ms": round(statistics.median(times), 2),
                "records": valid + invalid,
                "valid": valid,
                "invalid": invalid,
                "python": sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
