"""Mounts (protocol v1.1 §E): a host directory packed as a tar archive for the
guest, and a writable mount's archive as the guest left it."""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from typing import Dict, Optional, Union

__all__ = ["Mount", "MountOut", "pack_directory"]

PathLike = Union[str, "os.PathLike[str]"]


def pack_directory(host_dir: PathLike) -> bytes:
    """A tar archive (pax) of the regular files and directories under ``host_dir``,
    sorted by name, as a mount's ``tar``. A symbolic link or any other kind of file
    is an error (the server refuses them)."""
    root = os.fspath(host_dir)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                relative = os.path.relpath(full, root).replace(os.sep, "/")
                if os.path.islink(full):
                    raise ValueError(f"{full} is a symbolic link: a mount holds regular files and directories only")
                info = tarfile.TarInfo(relative)
                stat = os.stat(full)
                info.mtime = int(stat.st_mtime)
                info.uid = info.gid = 0
                if os.path.isdir(full):
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    archive.addfile(info)
                elif os.path.isfile(full):
                    info.mode = 0o644
                    info.size = stat.st_size
                    with open(full, "rb") as file:
                        archive.addfile(info, file)
                else:
                    raise ValueError(f"{full} is neither a regular file nor a directory")
    return buffer.getvalue()


@dataclass
class Mount:
    """A directory the guest sees at ``path`` (protocol v1.1 §E): the contents of
    ``tar`` (a tar archive), or empty; writable ones come back in ``mounts_out``."""

    path: str
    tar: Optional[bytes] = None
    writable: bool = False

    @classmethod
    def directory(cls, path: str, host_dir: PathLike, writable: bool = False) -> "Mount":
        """The host directory ``host_dir`` (packed with :func:`pack_directory`) at ``path``."""
        return cls(path, pack_directory(host_dir), writable)


@dataclass
class MountOut:
    """A writable mount as the guest left it: ``tar`` is a ustar/pax archive."""

    path: str
    tar: bytes

    def files(self) -> Dict[str, bytes]:
        """Every regular file of the archive, by its name inside the mount."""
        out: Dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(self.tar), mode="r:") as archive:
            for member in archive.getmembers():
                if member.isfile():
                    extracted = archive.extractfile(member)
                    out[member.name] = extracted.read() if extracted is not None else b""
        return out

    def extract(self, host_dir: PathLike) -> None:
        """Writes the archive's files and directories under ``host_dir``; a name that
        would leave it is refused."""
        root = os.path.realpath(os.fspath(host_dir))
        os.makedirs(root, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(self.tar), mode="r:") as archive:
            for member in archive.getmembers():
                target = os.path.realpath(os.path.join(root, member.name))
                if os.path.commonpath([root, target]) != root:
                    raise ValueError(f"archive member {member.name!r} is outside the directory")
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                elif member.isfile():
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    extracted = archive.extractfile(member)
                    with open(target, "wb") as file:
                        file.write(extracted.read() if extracted is not None else b"")
                else:
                    raise ValueError(f"archive member {member.name!r} is not a file or directory")
