"""The file system as storage/ sees it: a small interface, the real one, and a faulty one.

Rules:
* storage/ touches the disk only through `FileSystem` and the `File` handles it opens,
  so every durability claim can be tested against `MemoryFileSystem`, which models what
  a crash keeps: data reaches "the platter" only through `File.fsync`, names (create,
  rename, remove) only through `fsync_dir` of their directory.
* `MemoryFileSystem.crash(rng)` forgets everything not made durable, except that a
  random subset of the unsynced 512-byte sectors may have reached the disk anyway (the
  kernel writes pages back in any order): that is how torn writes appear. `flip_bit`
  models media corruption of durable data.
* Paths are plain strings; directories are implicit in `MemoryFileSystem` (a path's
  directory is everything before its last "/").
* Errors of the real file system (OSError) propagate: a disk that fails a write or an
  fsync leaves us unable to promise durability, so the caller stops (fsyncgate: after a
  failed fsync the page cache may have dropped the data; retrying proves nothing).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Protocol

SECTOR_SIZE = 512  # bytes; the unit in which a torn write is modelled and detected


class File(Protocol):
    """An open file, for writing. Reads go through `FileSystem.read`."""

    def pwrite(self, offset: int, data: bytes) -> None: ...

    def fsync(self) -> None:
        """Make the data written so far durable (fdatasync: size changes included)."""
        ...

    def allocate(self, size: int) -> None:
        """Make the file at least `size` bytes long, zero-filled (preallocation)."""
        ...

    def truncate(self, size: int) -> None: ...

    def size(self) -> int: ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    def open(self, path: str, *, create: bool) -> File:
        """Open for writing; `create` makes a new empty file (it must not exist)."""
        ...

    def read(self, path: str) -> bytes: ...

    def size(self, path: str) -> int: ...

    def exists(self, path: str) -> bool: ...

    def listdir(self, directory: str) -> list[str]:
        """Names in `directory` (not paths), sorted; [] if it does not exist."""
        ...

    def makedirs(self, directory: str) -> None: ...

    def rename(self, source: str, target: str) -> None:
        """Atomic replace of `target`; durable once `fsync_dir` of the directory ran."""
        ...

    def remove(self, path: str) -> None: ...

    def fsync_dir(self, directory: str) -> None: ...


# ---------------------------------------------------------------------- the real one


class OsFile:
    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    def pwrite(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written

    def fsync(self) -> None:
        os.fdatasync(self._fd)

    def allocate(self, size: int) -> None:
        if size <= self.size():
            return
        try:
            # Real blocks, so later appends neither grow the file nor find the disk full.
            os.posix_fallocate(self._fd, 0, size)
        except OSError:
            # File systems without fallocate (tmpfs on old kernels): a sparse extension.
            os.ftruncate(self._fd, size)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)


class OsFileSystem:
    """The real file system (os.* calls, nothing buffered in Python)."""

    def open(self, path: str, *, create: bool) -> File:
        flags = os.O_RDWR | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        return OsFile(path, os.open(path, flags, 0o644))

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, directory: str) -> list[str]:
        try:
            return sorted(os.listdir(directory))
        except FileNotFoundError:
            return []

    def makedirs(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)

    def rename(self, source: str, target: str) -> None:
        os.replace(source, target)

    def remove(self, path: str) -> None:
        os.remove(path)

    def fsync_dir(self, directory: str) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------- the faulty one


@dataclass(slots=True)
class _Inode:
    data: bytearray = field(default_factory=bytearray)  # what reads see
    durable: bytearray = field(default_factory=bytearray)  # what survives a crash


def _split(path: str) -> tuple[str, str]:
    directory, _, name = path.rpartition("/")
    return directory, name


class MemoryFile:
    def __init__(self, fs: MemoryFileSystem, inode: _Inode) -> None:
        self._fs = fs
        self._inode = inode

    def pwrite(self, offset: int, data: bytes) -> None:
        self._fs.before_write()
        buf = self._inode.data
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset : offset + len(data)] = data

    def fsync(self) -> None:
        self._fs.before_write()
        self._inode.durable = bytearray(self._inode.data)

    def allocate(self, size: int) -> None:
        self._fs.before_write()
        if size > len(self._inode.data):
            self._inode.data.extend(bytes(size - len(self._inode.data)))

    def truncate(self, size: int) -> None:
        self._fs.before_write()
        del self._inode.data[size:]
        if size > len(self._inode.data):
            self._inode.data.extend(bytes(size - len(self._inode.data)))

    def size(self) -> int:
        return len(self._inode.data)

    def close(self) -> None:
        pass


class CrashPoint(Exception):
    """Raised by MemoryFileSystem when the write budget set by `crash_after` runs out."""


class MemoryFileSystem:
    """An in-memory file system that forgets unsynced data at a simulated crash."""

    def __init__(self) -> None:
        self._names: dict[str, dict[str, _Inode]] = {}  # directory -> name -> inode
        self._durable_names: dict[str, dict[str, _Inode]] = {}
        self._writes_left: int | None = None

    # The crash budget: after `writes` more mutating calls, every further one raises
    # CrashPoint, so a test can stop the code under test at any write and then crash().
    def crash_after(self, writes: int | None) -> None:
        self._writes_left = writes

    def before_write(self) -> None:
        if self._writes_left is None:
            return
        if self._writes_left <= 0:
            raise CrashPoint("simulated crash")
        self._writes_left -= 1

    def _lookup(self, path: str) -> _Inode:
        directory, name = _split(path)
        inode = self._names.get(directory, {}).get(name)
        if inode is None:
            raise FileNotFoundError(path)
        return inode

    def open(self, path: str, *, create: bool) -> File:
        directory, name = _split(path)
        if create:
            self.before_write()
            entries = self._names.setdefault(directory, {})
            if name in entries:
                raise FileExistsError(path)
            entries[name] = _Inode()
            return MemoryFile(self, entries[name])
        return MemoryFile(self, self._lookup(path))

    def read(self, path: str) -> bytes:
        return bytes(self._lookup(path).data)

    def size(self, path: str) -> int:
        return len(self._lookup(path).data)

    def exists(self, path: str) -> bool:
        directory, name = _split(path)
        return name in self._names.get(directory, {}) or path in self._names

    def listdir(self, directory: str) -> list[str]:
        return sorted(self._names.get(directory.rstrip("/"), {}))

    def makedirs(self, directory: str) -> None:
        # Directories are implicit; creating one is durable at once (like mkdir + the
        # parent's fsync, which storage/ does not rely on for its own files).
        directory = directory.rstrip("/")
        self._names.setdefault(directory, {})
        self._durable_names.setdefault(directory, {})

    def rename(self, source: str, target: str) -> None:
        self.before_write()
        inode = self._lookup(source)
        source_dir, source_name = _split(source)
        target_dir, target_name = _split(target)
        del self._names[source_dir][source_name]
        self._names.setdefault(target_dir, {})[target_name] = inode

    def remove(self, path: str) -> None:
        self.before_write()
        self._lookup(path)
        directory, name = _split(path)
        del self._names[directory][name]

    def fsync_dir(self, directory: str) -> None:
        self.before_write()
        directory = directory.rstrip("/")
        self._durable_names[directory] = dict(self._names.get(directory, {}))

    # -- faults -------------------------------------------------------------------

    def crash(self, rng: random.Random, *, torn: bool = True) -> None:
        """Lose what was not made durable. With `torn`, each unsynced sector that
        differs from its durable content reaches the disk with probability 1/2."""
        self._writes_left = None
        inodes = {id(i): i for names in self._names.values() for i in names.values()}
        inodes.update({id(i): i for names in self._durable_names.values() for i in names.values()})
        for inode in inodes.values():
            kept = bytearray(inode.durable)
            if torn:
                size = max(len(inode.data), len(kept))
                for start in range(0, size, SECTOR_SIZE):
                    new = inode.data[start : start + SECTOR_SIZE]
                    if new != kept[start : start + SECTOR_SIZE] and rng.random() < 0.5:
                        if len(kept) < start:
                            kept.extend(bytes(start - len(kept)))
                        kept[start : start + len(new)] = new
            inode.data = kept
            inode.durable = bytearray(kept)
        self._names = {d: dict(names) for d, names in self._durable_names.items()}

    def flip_bit(self, path: str, bit: int) -> None:
        """Flip one bit of a file, in its durable content too (media corruption)."""
        inode = self._lookup(path)
        inode.data[bit // 8] ^= 1 << (bit % 8)
        if bit // 8 < len(inode.durable):
            inode.durable[bit // 8] ^= 1 << (bit % 8)

    def write_raw(self, path: str, data: bytes) -> None:
        """Replace a file's content durably (test setup: damage a file by hand)."""
        inode = self._lookup(path)
        inode.data = bytearray(data)
        inode.durable = bytearray(data)
