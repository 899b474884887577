"""Reading the simulator registry's access log (one line per request: method, path, status, bytes sent)."""


def log_lines(path):
    return path.read_text().splitlines() if path.exists() else []


def blob_downloads(lines):
    """(requests, bytes) of blob downloads among access-log lines."""
    count, sent = 0, 0
    for line in lines:
        method, path, _status, size = line.split(" ")
        if method == "GET" and ("/blobs/" in path or path.startswith("/_sim/blobs/")):
            count += 1
            sent += int(size)
    return count, sent
