"""Start one container: `python -m sim.container SPEC.json`, then exec its program (the pid stays).

A fresh interpreter rather than a fork of the controller: the controller runs threads (its pod watch, the
probe pool), and setns/unshare/pivot_root in a forked copy of a threaded process is unsafe.

In order: join the pod's network namespace; unshare a mount and a UTS namespace (hostname = the pod's);
make every mount private; build the container's root in its scratch directory — the host's /usr, /etc,
/var and /opt under overlays whose writes land in the scratch directory (the container's writable layer),
/proc, /sys and /dev bound, the rest (/root, /home, /tmp, /run, ...) empty; pivot into it; bind the image's
program where the image keeps it, write the image's own files, bind each volume at its mountPath (subPath
and readOnly already resolved by the runtime), /etc/hosts and /etc/hostname; drop the old root; with
readOnlyRootFilesystem, remount the root and its overlays read-only; set the groups, gid and uid (and
no_new_privs); chdir; exec with the container's environment.

Nothing is created on the host's own filesystem outside the scratch directory: a missing mount point is
made inside the container's root, which lands in an overlay's upper directory or the root's own directory.
A failure before exec is written to spec["error_file"] and the launcher exits 128 (the runtime reports it
as StartError, as containerd does).
"""

import ctypes
import ctypes.util
import json
import os
import platform
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
# Host directories the container sees under an overlay (the image's operating system stands on them).
OVERLAID = ("usr", "etc", "var", "opt", "srv", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
BOUND = ("proc", "sys", "dev")
OLD_ROOT = "/.llmsim-oldroot"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class LaunchError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise LaunchError(f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None),
           f"mount {source or fstype} on {target}")


def bind(source: str, target: str, read_only=False, recursive=True) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | (MS_REC if recursive else 0))


def _make_target(path: str, is_dir: bool) -> None:
    """Create a mount point inside the container's root (never on the host: the root is already ours)."""
    if os.path.lexists(path) and not os.path.exists(path):
        raise LaunchError(f"mount point {path} is a dangling symlink")
    if os.path.exists(path):
        if os.path.isdir(path) != is_dir:
            raise LaunchError(f"mount point {path} exists and is not a {'directory' if is_dir else 'file'}")
        return
    os.makedirs(path if is_dir else os.path.dirname(path) or "/", exist_ok=True)
    if not is_dir:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def build_root(spec: dict) -> None:
    rootfs, upper, work = spec["rootfs"], spec["upper"], spec["work"]
    bind(rootfs, rootfs, recursive=False)
    for entry in sorted(os.listdir("/")):
        host = "/" + entry
        inside = os.path.join(rootfs, entry)
        if os.path.islink(host):
            os.symlink(os.readlink(host), inside)
        elif not os.path.isdir(host):
            continue
        elif entry in OVERLAID:
            os.makedirs(inside, exist_ok=True)
            up, wk = os.path.join(upper, entry), os.path.join(work, entry)
            os.makedirs(up, exist_ok=True)
            os.makedirs(wk, exist_ok=True)
            mount("overlay", inside, "overlay", 0, f"lowerdir={host},upperdir={up},workdir={wk}")
        elif entry in BOUND:
            os.makedirs(inside, exist_ok=True)
            bind(host, inside)
        else:
            os.makedirs(inside, exist_ok=True)
            os.chmod(inside, 0o1777 if entry == "tmp" else stat.S_IMODE(os.stat(host).st_mode) & 0o755)
    # A shared memory of the container's own, as a runtime gives it.
    shm = os.path.join(rootfs, "dev", "shm")
    if os.path.isdir(shm):
        mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")


def pivot(rootfs: str) -> None:
    if SYS_PIVOT_ROOT is None:
        raise LaunchError(f"pivot_root is not known on {platform.machine()}")
    os.chdir(rootfs)
    os.makedirs(rootfs + OLD_ROOT, exist_ok=True)
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", ("." + OLD_ROOT).encode()), "pivot_root")
    os.chdir("/")


def drop_old_root() -> None:
    _check(_libc.umount2(OLD_ROOT.encode(), MNT_DETACH), f"umount {OLD_ROOT}")
    os.rmdir(OLD_ROOT)


def old(path: str) -> str:
    return OLD_ROOT + path


def place(spec: dict) -> None:
    """After pivot_root: the image's program and files, then the volumes, by mount point depth."""
    placed = set()
    for target in spec.get("program_paths", []):
        real = os.path.realpath(target)
        if real in placed:
            continue
        _make_target(real, is_dir=False)
        bind(old(spec["program"]), real, read_only=True, recursive=False)
        placed.add(real)
    for item in spec.get("files", []):
        os.makedirs(os.path.dirname(item["path"]), exist_ok=True)
        with open(item["path"], "w") as fh:
            fh.write(item["content"])
        os.chmod(item["path"], item.get("mode", 0o644))
    for item in spec.get("owned_dirs", []):
        os.makedirs(item["path"], exist_ok=True)
        for dirpath, dirnames, filenames in os.walk(item["path"]):
            for name in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
                os.lchown(name, item["uid"], item["gid"])
    for item in sorted(spec.get("mounts", []), key=lambda m: len(m["target"].rstrip("/").split("/"))):
        source = old(item["source"])
        if not os.path.exists(source):
            raise LaunchError(f"volume source {item['source']} is gone")
        _make_target(item["target"], is_dir=os.path.isdir(source))
        bind(source, item["target"], read_only=item.get("read_only", False))


def read_only_root() -> None:
    """readOnlyRootFilesystem: the root and its overlays read-only; volumes, /dev, /proc, /sys keep theirs."""
    for entry in [""] + list(OVERLAID):
        path = "/" + entry
        if entry and (os.path.islink(path) or not os.path.ismount(path)):
            continue
        mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def become(spec: dict) -> None:
    os.setgroups(spec.get("groups", []))
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    if spec.get("no_new_privs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def launch(spec: dict) -> None:
    netns = os.open(spec["netns"], os.O_RDONLY)
    _check(_libc.setns(netns, CLONE_NEWNET), f"setns {spec['netns']}")
    os.close(netns)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    hostname = spec["hostname"].encode()
    _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    build_root(spec)
    pivot(spec["rootfs"])
    place(spec)
    drop_old_root()
    cwd = spec.get("cwd") or "/"
    os.makedirs(cwd, exist_ok=True)
    if spec.get("read_only_root"):
        read_only_root()
    os.umask(0o022)
    become(spec)
    os.chdir(cwd)
    env = dict(spec["env"])
    argv = spec["argv"]
    if not argv:
        raise LaunchError("no command specified")
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        where = "" if "/" in argv[0] else " in $PATH"
        raise LaunchError(f'exec: "{argv[0]}": executable file not found{where}') from None
    except PermissionError:
        raise LaunchError(f'exec: "{argv[0]}": permission denied') from None
    except OSError as exc:
        raise LaunchError(f'exec: "{argv[0]}": {exc.strerror}') from None


def main(argv=None) -> int:
    argv = argv or sys.argv[1:]
    with open(argv[0]) as fh:
        spec = json.load(fh)
    error = os.open(spec["error_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        launch(spec)
    except (LaunchError, OSError) as exc:
        os.write(error, str(exc).encode())
        return 128
    return 128  # exec returned: cannot happen


if __name__ == "__main__":
    sys.exit(main())
