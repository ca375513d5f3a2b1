#!/usr/bin/env python3
"""Seeds for fuzz/agent_request and fuzz/agent_reply: real agent channel lines.

  agent_lines.py record AGENT_BINARY REQUESTS_DIR REPLIES_DIR
      starts the real guest agent on this host (--listen), speaks every op to
      it (and a few requests it must refuse), and writes what went each way:
      one file per request with the lines the agent sent until its reply.
  agent_lines.py split AGENT_LOG REQUESTS_DIR REPLIES_DIR
      cuts a lab run's agent.log (AgentClient's log of a VM's channel: "T > "
      lines to the guest, "T < " lines from it) into one seed per message
      shape; long payloads are shortened (the fuzzer mutates short inputs).

Called by fuzz/make_corpus.sh (part agent); files are named gen-*.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

MAX_PAYLOAD = 96  # base64 characters kept of a put/get payload (a multiple of 4)
MAX_TEXT = 4096  # characters kept of captured output (hotpatch --json stays whole)
MAX_LINES = 4  # kernel log lines kept in a kmsg reply


def shorten(message):
    m = dict(message)
    if isinstance(m.get("data"), str):
        m["data"] = m["data"][:MAX_PAYLOAD]
    for key in ("stdout", "stderr"):
        if isinstance(m.get(key), str):
            m[key] = m[key][:MAX_TEXT]
    if isinstance(m.get("lines"), list):
        m["lines"] = m["lines"][:MAX_LINES]
    return m


def line_of(message):
    return json.dumps(message, separators=(",", ":"), sort_keys=True)


def shape(message):
    """What makes two messages the same kind: op or event, and the key set."""
    kind = message.get("op") or message.get("event") or ("ok" if message.get("ok") else "refused")
    return kind, tuple(sorted(message))


def write(folder, name, lines):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w") as f:
        f.write("".join(line + "\n" for line in lines))


def split(log_path, requests_dir, replies_dir):
    seen = {}
    with open(log_path, errors="replace") as f:
        for raw in f:
            fields = raw.split(None, 2)
            if len(fields) < 3 or fields[1] not in ("<", ">"):
                continue
            try:
                message = json.loads(fields[2])
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            key = (fields[1],) + shape(message)
            if key not in seen:
                seen[key] = line_of(shorten(message))
    counts = {}
    for (direction, kind, _), line in sorted(seen.items()):
        folder = requests_dir if direction == ">" else replies_dir
        n = counts[(direction, kind)] = counts.get((direction, kind), 0) + 1
        write(folder, "gen-guest-%s-%d" % (kind, n), [line])


REQUESTS = [
    {"op": "hello"},
    {"op": "run", "argv": ["/bin/sh", "-c", "cat; echo err >&2; exit 3"], "stdin": "in\n",
     "env": {"LC_ALL": "C"}, "cwd": "/", "timeout_ms": 20000},
    {"op": "exec", "argv": ["/bin/sleep", "30"], "env": {}, "cwd": "/"},
    {"op": "sample", "pid": "$sleep"},
    {"op": "procs", "exe": "/usr/bin/sleep"},
    {"op": "wait", "pid": "$sleep", "timeout_ms": 50},
    {"op": "kill", "pid": "$sleep", "signal": 15},
    {"op": "wait", "pid": "$sleep", "timeout_ms": 20000},
    {"op": "put", "path": "$dir/f", "mode": 420, "offset": 0, "data": "aGVsbG8sIGFnZW50Cg=="},
    {"op": "get", "path": "$dir/f", "offset": 0, "length": 262144},
    {"op": "get", "path": "$dir/missing", "offset": 0, "length": 16},
    {"op": "kmsg_mark"},
    {"op": "kmsg", "since": 0},
    {"op": "wait", "pid": 999999999, "timeout_ms": 0},
    {"op": "kill", "pid": -1, "signal": 0},
    {"op": "run", "argv": ["/bin/true"], "timeout_ms": 1e30},
    {"op": "no_such_op"},
    "not a request",  # no id: the agent answers with an error event
    {"op": "shutdown"},
]


def record(agent, requests_dir, replies_dir):
    work = tempfile.mkdtemp(prefix="fuzz-agent-lines.")
    sock_path = os.path.join(work, "agent.sock")
    proc = subprocess.Popen([agent, "--listen", sock_path, "--out", os.path.join(work, "out"),
                             "--kmsg", "/dev/null"])
    try:
        for _ in range(200):
            if os.path.exists(sock_path):
                break
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        s.settimeout(30)
        reader = s.makefile("r")
        ready = reader.readline().strip()
        write(replies_dir, "gen-host-ready", [ready])
        sleep_pid = None
        session = []
        for n, request in enumerate(REQUESTS, start=1):
            if isinstance(request, str):
                line, op = request, "garbage"
            else:
                request = dict(request, id=n)
                for key, value in request.items():
                    if value == "$sleep":
                        request[key] = sleep_pid
                    elif isinstance(value, str) and value.startswith("$dir"):
                        request[key] = work + value[4:]
                line, op = line_of(request), request["op"]
            session.append(line)
            write(requests_dir, "gen-host-%02d-%s" % (n, op), [line])
            s.sendall((line + "\n").encode())
            got = []
            while True:
                text = reader.readline()
                if not text:
                    break
                got.append(text.strip())
                message = json.loads(got[-1])
                if message.get("id") == n or message.get("event") == "error":
                    break
            if op == "exec" and got:
                sleep_pid = json.loads(got[-1]).get("pid")
            write(replies_dir, "gen-host-%02d-%s" % (n, op), got)
        write(requests_dir, "gen-host-session", session)
    finally:
        try:
            proc.wait(timeout=10)  # shutdown ends it
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", work], check=False)


def main(argv):
    if len(argv) == 5 and argv[1] == "record":
        record(argv[2], argv[3], argv[4])
    elif len(argv) == 5 and argv[1] == "split":
        split(argv[2], argv[3], argv[4])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
