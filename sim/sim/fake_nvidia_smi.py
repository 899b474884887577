#!/usr/bin/python3
"""Stand-in nvidia-smi for the simulated GPU hosts: answers from output recorded on a real NVIDIA H200.

Installed as /usr/bin/nvidia-smi in each host's root (sim.hosts), with the recording beside it in
RECORDING_DIR. Plain `nvidia-smi` prints the recorded summary as it was; `-L` and `--query-gpu` answer
from the recorded query (sim/data/h200-nvidia-smi-query.csv), in the formats the real program prints.
A field that nvidia-smi knows but the recording lacks fails loudly rather than printing a made-up value.
Standard library only: it runs under the host's /usr/bin/python3.
"""

import os
import re
import sys

RECORDING_DIR = "/usr/share/llmops-sim/nvidia-smi"
SUMMARY_FILE, QUERY_FILE = "nvidia-smi.txt", "nvidia-smi-query.csv"
ALIASES = {"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id", "gpu_serial": "serial"}
# Fields real nvidia-smi accepts that the recording does not hold (a subset; see `nvidia-smi --help-query-gpu`).
KNOWN_UNRECORDED = {
    "timestamp", "serial", "vbios_version", "pci.domain", "pci.bus", "pci.device", "pci.device_id",
    "memory.free", "memory.reserved", "utilization.gpu", "utilization.memory", "temperature.gpu",
    "temperature.memory", "power.draw", "power.limit", "power.max_limit", "pstate", "fan.speed",
    "clocks.sm", "clocks.mem", "clocks.gr", "clocks.max.sm", "clocks.max.mem", "compute_mode",
    "mig.mode.current", "mig.mode.pending", "ecc.mode.current", "display_mode", "display_active",
    "inforom.oem", "driver_model.current", "gom.current", "accounting.mode", "enforced.power.limit",
}
INVALID_ARGS = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"
_BUS_ID_RE = re.compile(r"\b([0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\b")


def load(summary_text: str, query_csv: str) -> dict:
    """The recording: the summary as printed, and one dict per GPU of field -> (value, unit)."""
    lines = [line for line in query_csv.splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split(",")]
    fields = []
    for name in header:
        match = re.match(r"^(\S+)(?: \[(.+)\])?$", name)
        fields.append((match.group(1), match.group(2)))
    gpus = []
    for line in lines[1:]:
        values = [v.strip() for v in line.split(",")]
        gpu = {}
        for (name, unit), value in zip(fields, values):
            if unit and value.endswith(" " + unit):
                value = value[: -len(unit) - 1]
            gpu[name] = (value, unit)
        gpus.append(gpu)
    bus_ids = _BUS_ID_RE.findall(summary_text)
    for gpu, bus_id in zip(gpus, bus_ids):
        gpu.setdefault("pci.bus_id", (bus_id, None))
    for gpu in gpus:
        gpu["count"] = (str(len(gpus)), None)
    return {"summary": summary_text, "gpus": gpus}


def _option(args, short, long):
    """Value of -x VALUE / --long=VALUE / --long VALUE, the args without it, and whether it was there."""
    rest, value, found = [], None, False
    it = iter(args)
    for arg in it:
        if arg == short or arg == long:
            value, found = next(it, None), True
        elif arg.startswith(long + "="):
            value, found = arg.split("=", 1)[1], True
        else:
            rest.append(arg)
    return value, rest, found


def _select(gpus, ids):
    if ids is None:
        return gpus
    wanted = [i.strip() for i in ids.split(",")]
    chosen = [g for g in gpus if g["index"][0] in wanted or g["uuid"][0] in wanted
              or g.get("pci.bus_id", ("", None))[0] in wanted]
    return chosen if len(chosen) == len(wanted) else None


def answer(argv: list, recording: dict):
    """(exit code, stdout, stderr) of `nvidia-smi ARGV` on the recorded machine."""
    ids, args, id_given = _option(argv, "-i", "--id")
    gpus = _select(recording["gpus"], ids)
    if gpus is None or (id_given and ids is None):
        return 6, "No devices were found\n", ""
    if not args:
        return 0, recording["summary"], ""
    if args in (["-L"], ["--list-gpus"]):
        return 0, "".join(f"GPU {g['index'][0]}: {g['name'][0]} (UUID: {g['uuid'][0]})\n" for g in gpus), ""
    query, args, _ = _option(args, "--query-gpu", "--query-gpu")
    fmt, args, _ = _option(args, "--format", "--format")
    if query is None or args:
        return 2, INVALID_ARGS, ""
    options = (fmt or "").split(",")
    if not fmt or options[0] != "csv" or not set(options[1:]) <= {"noheader", "nounits"}:
        return 2, "\"--format\" requires a csv format specifier, e.g. --format=csv,noheader,nounits\n", ""
    names = [ALIASES.get(f.strip(), f.strip()) for f in query.split(",") if f.strip()]
    recorded = set(recording["gpus"][0]) if recording["gpus"] else set()
    for name in names:
        if name not in recorded:
            if name in KNOWN_UNRECORDED:
                return 2, "", (f"nvidia-smi (simulator stand-in): field \"{name}\" was not recorded on the H200; "
                               f"recorded fields: {', '.join(sorted(recorded))}\n")
            return 2, f"Field \"{name}\" is not a valid field to query.\n\n", ""
    out = []
    if "noheader" not in options:
        out.append(", ".join(f"{n} [{recording['gpus'][0][n][1]}]" if recording["gpus"][0][n][1] else n
                             for n in names))
    for gpu in gpus:
        cells = []
        for name in names:
            value, unit = gpu[name]
            cells.append(value if not unit or "nounits" in options else f"{value} {unit}")
        out.append(", ".join(cells))
    return 0, "".join(line + "\n" for line in out), ""


def main(argv=None) -> int:
    directory = os.environ.get("LLMOPS_SIM_NVIDIA_SMI_RECORDING", RECORDING_DIR)
    with open(os.path.join(directory, SUMMARY_FILE)) as summary, open(os.path.join(directory, QUERY_FILE)) as query:
        recording = load(summary.read(), query.read())
    code, out, err = answer(list(sys.argv[1:] if argv is None else argv), recording)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
