#!/usr/bin/env python3
"""tests/fuse/fsdiff.py - differential tester of the mount (issue 5 "Show it
works", last item).

Applies one seeded random sequence of file operations (create, write at
offsets, append, truncate, rename, unlink, mkdir, rmdir, chmod, symlink,
utimens, stat, read, readdir) to a directory on local disk and to a
directory in a kvfs mount, and compares every result: the value or the
errno; for stat the type, size, mode and (after utimens) mtime; for read the
content; for readdir the names. At the end the two trees are compared
whole. The seed is printed; KV_SEED=<seed> replays a run exactly.

    fsdiff.py LOCAL_DIR MOUNT_DIR [--ops N] [--seed S]

Exit status 0 when every result matched, 1 at the first difference (with the
operation's number, the operation, both results and the last operations).
"""

import argparse
import errno
import os
import random
import stat
import sys

# Names are drawn from a small pool so that operations collide: renames onto
# existing names, rmdir of non-empty directories, writes through symlinks.
NAMES = ["a", "b", "c", "dd", "e.txt"]
DIRS = ["", "d1", "d2", "d1/d3"]

# POSIX lets rename onto a non-empty directory fail with either.
EQUIVALENT = [{errno.ENOTEMPTY, errno.EEXIST}]


def errname(e):
    return errno.errorcode.get(e, str(e))


class Side:
    """One directory the sequence runs in; paths are relative to root."""

    def __init__(self, root):
        self.root = root

    def p(self, rel):
        return os.path.join(self.root, rel) if rel else self.root


def do(side, op):
    """Runs op on side; returns a comparable result: ("ok", value) or
    ("err", errno name)."""
    kind = op[0]
    try:
        return ("ok", run_op(side, kind, op))
    except OSError as e:
        return ("err", e.errno)


def st_summary(st, with_mtime):
    out = {
        "type": stat.S_IFMT(st.st_mode),
        "mode": oct(stat.S_IMODE(st.st_mode)),
        "size": st.st_size if not stat.S_ISDIR(st.st_mode) else None,
    }
    if with_mtime:
        out["mtime_ns"] = st.st_mtime_ns
    return out


def run_op(s, kind, op):
    if kind == "create":
        _, rel, excl, mode = op
        flags = os.O_CREAT | os.O_WRONLY | (os.O_EXCL if excl else os.O_TRUNC)
        fd = os.open(s.p(rel), flags, mode)
        os.close(fd)
        return None
    if kind == "write":
        _, rel, off, data = op
        fd = os.open(s.p(rel), os.O_WRONLY)
        try:
            n = os.pwrite(fd, data, off)
        finally:
            os.close(fd)
        return n
    if kind == "append":
        _, rel, data = op
        fd = os.open(s.p(rel), os.O_WRONLY | os.O_APPEND)
        try:
            n = os.write(fd, data)
        finally:
            os.close(fd)
        return n
    if kind == "truncate":
        _, rel, size = op
        os.truncate(s.p(rel), size)
        return None
    if kind == "rename":
        _, a, b = op
        os.rename(s.p(a), s.p(b))
        return None
    if kind == "unlink":
        os.unlink(s.p(op[1]))
        return None
    if kind == "mkdir":
        os.mkdir(s.p(op[1]), op[2])
        return None
    if kind == "rmdir":
        os.rmdir(s.p(op[1]))
        return None
    if kind == "chmod":
        os.chmod(s.p(op[1]), op[2])
        return None
    if kind == "symlink":
        _, target, rel = op
        os.symlink(target, s.p(rel))
        return None
    if kind == "utimens":
        _, rel, atime, mtime, follow = op
        os.utime(s.p(rel), ns=(atime, mtime), follow_symlinks=follow)
        return None
    if kind == "stat":
        _, rel, follow, with_mtime = op
        st = os.stat(s.p(rel), follow_symlinks=follow)
        return st_summary(st, with_mtime)
    if kind == "read":
        with open(s.p(op[1]), "rb") as f:
            return f.read()
    if kind == "readlink":
        return os.readlink(s.p(op[1]))
    if kind == "readdir":
        return sorted(os.listdir(s.p(op[1])))
    raise AssertionError(kind)


def gen_op(rng, mtime_known):
    """One random operation. mtime_known: the paths whose mtime was set by
    utimens and not changed since, where stat compares the mtime too."""
    def path():
        d = rng.choice(DIRS)
        n = rng.choice(NAMES)
        return os.path.join(d, n) if d else n

    def anypath():
        return rng.choice(DIRS[1:]) if rng.random() < 0.2 else path()

    def data():
        n = rng.choice([0, 1, 7, 100, 4096, 5000, rng.randrange(1, 70000)])
        return bytes(rng.randrange(256) for _ in range(min(n, 64))) * (n // 64 + 1)

    r = rng.random()
    ops = [
        (0.12, lambda: ("create", path(), rng.random() < 0.3, rng.choice([0o644, 0o600, 0o755]))),
        (0.12, lambda: ("write", path(), rng.choice([0, 1, 100, 4095, 65536, rng.randrange(0, 200000)]), data()[:rng.randrange(1, 9000)])),
        (0.06, lambda: ("append", path(), data()[:rng.randrange(1, 3000)])),
        (0.06, lambda: ("truncate", path(), rng.choice([0, 1, 10, 4096, rng.randrange(0, 300000)]))),
        (0.07, lambda: ("rename", anypath(), anypath())),
        (0.06, lambda: ("unlink", path())),
        (0.05, lambda: ("mkdir", rng.choice(DIRS[1:]), rng.choice([0o755, 0o700]))),
        (0.04, lambda: ("rmdir", rng.choice(DIRS[1:]))),
        (0.05, lambda: ("chmod", anypath(), rng.choice([0o600, 0o644, 0o640, 0o755, 0o700, 0o444]))),
        (0.04, lambda: ("symlink", rng.choice(["a", "b", "d1/c", "nowhere", "dd"]), path())),
        (0.06, lambda: ("utimens", anypath(), rng.randrange(0, 2**31) * 10**9 + rng.randrange(10**9),
                        rng.randrange(0, 2**31) * 10**9 + rng.randrange(10**9), rng.random() < 0.8)),
        (0.10, None),  # stat
        (0.08, lambda: ("read", path())),
        (0.03, lambda: ("readlink", path())),
        (0.06, lambda: ("readdir", rng.choice(DIRS))),
    ]
    acc = 0.0
    total = sum(w for w, _ in ops)
    r *= total
    for w, f in ops:
        acc += w
        if r < acc:
            if f is None:
                p = anypath()
                follow = rng.random() < 0.7
                return ("stat", p, follow, p in mtime_known)
            return f()
    return ("readdir", "")


def touched(op):
    """Paths whose mtime an operation may change (conservatively)."""
    kind = op[0]
    if kind in ("create", "write", "append", "truncate", "unlink", "symlink", "mkdir", "rmdir"):
        p = op[1] if kind != "symlink" else op[2]
        return {p, os.path.dirname(p)}
    if kind == "rename":
        return {op[1], op[2], os.path.dirname(op[1]), os.path.dirname(op[2])}
    return set()


MUTATING = {"create", "write", "append", "truncate", "chmod", "utimens"}


def through_link(root, rel):
    """True when rel, under root, is or goes through a symlink."""
    p = os.path.join(root, rel)
    return os.path.realpath(p) != os.path.abspath(p)


def walk(root):
    """The whole tree: {relpath: (type, mode, size, content or target)}."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    body = f.read()
            else:
                body = None
            size = None if stat.S_ISDIR(st.st_mode) else st.st_size
            out[rel] = (stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)), size, body)
    return out


def same(a, b):
    if a == b:
        return True
    if a[0] == "err" and b[0] == "err":
        return any(a[1] in s and b[1] in s for s in EQUIVALENT)
    return False


def show(res):
    kind, v = res
    if kind == "err":
        return "error " + errname(v)
    if isinstance(v, bytes):
        return "%d bytes, sha-ish %08x, head %r" % (len(v), hash(v) & 0xFFFFFFFF, v[:24])
    return "ok %r" % (v,)


def short(op):
    return tuple(("%d bytes" % len(x)) if isinstance(x, bytes) else x for x in op)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("local")
    ap.add_argument("mount")
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed
    if seed is None:
        seed = int(os.environ["KV_SEED"]) if os.environ.get("KV_SEED") else random.SystemRandom().randrange(2**32)
    print("fsdiff: seed %d (replay: KV_SEED=%d), %d operations" % (seed, seed, a.ops), flush=True)
    rng = random.Random(seed)
    local, mnt = Side(a.local), Side(a.mount)
    mtime_known = set()
    history = []
    counts = {}
    # Permissions do not bind root; make the runs comparable for others too.
    for i in range(a.ops):
        op = gen_op(rng, mtime_known)
        history.append(op)
        linked = len(op) > 1 and isinstance(op[1], str) and through_link(a.local, op[1])
        r1 = do(local, op)
        r2 = do(mnt, op)
        counts[op[0]] = counts.get(op[0], 0) + 1
        if not same(r1, r2):
            print("fsdiff: MISMATCH at operation %d (seed %d): %r" % (i, seed, short(op)))
            print("  local disk: %s" % show(r1))
            print("  the mount:  %s" % show(r2))
            print("  the operations before it:")
            for h in history[-12:-1]:
                print("    %r" % (short(h),))
            return 1
        # Track where stat may compare the mtime: only after utimens, until
        # something else changes that path or its directory.
        # Symlinks and renames make "which file did this change" a guess:
        # forget every known mtime then.
        if op[0] == "rename" or (op[0] in MUTATING and linked):
            mtime_known.clear()
        for p in touched(op):
            mtime_known = {k for k in mtime_known if k != p and not k.startswith(p + "/")}
        if op[0] == "utimens" and r1[0] == "ok" and not through_link(a.local, op[1]):
            mtime_known.add(op[1])
    t1, t2 = walk(a.local), walk(a.mount)
    if t1 != t2:
        print("fsdiff: the final trees differ (seed %d)" % seed)
        for k in sorted(set(t1) | set(t2)):
            if t1.get(k) != t2.get(k):
                def sm(v):
                    if v is None:
                        return "absent"
                    body = v[3]
                    if isinstance(body, bytes):
                        body = "%d bytes" % len(body)
                    return "type %o mode %s size %s %s" % (v[0], v[1], v[2], body)
                print("  %s: local %s; mount %s" % (k, sm(t1.get(k)), sm(t2.get(k))))
        return 1
    print("fsdiff: %d operations matched, final trees equal (%d entries); by kind: %s"
          % (a.ops, len(t1), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
