"""Reading a small file an operator points us at, without ever blocking or reading unbounded.

A path can name a FIFO (open and read block until a writer comes: polling and reloads would
freeze), a device such as /dev/zero (endless), a directory, or a huge file. Only a regular file
of at most ``limit`` bytes is read; everything else is a one-line reason.
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class FileProblem(Exception):
    """Why a file cannot be read, as a phrase: '... does not exist', '... is a FIFO ...'."""


class FileMissing(FileProblem):
    """The path does not exist."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_small_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), at most ``limit`` bytes.

    Raises ``FileProblem`` when it does not exist (or cannot be a file name), is not a regular
    file, is larger than ``limit`` bytes, or cannot be opened or read. Never blocks on a FIFO
    or device: the type is checked before opening, the open is non-blocking and the type is
    checked again on the open descriptor (the path may have been swapped in between).
    """
    p = Path(path)
    try:
        before = os.stat(p)
    except FileNotFoundError:
        raise FileMissing("does not exist") from None
    except OSError as e:
        raise FileProblem(f"cannot be read ({e.strerror or e.__class__.__name__})") from None
    except ValueError:  # "embedded null byte": no file can have such a name
        raise FileProblem("cannot be read: the path contains a NUL character") from None
    if not stat.S_ISREG(before.st_mode):
        raise FileProblem(f"cannot be read: it is {_kind(before.st_mode)}, not a regular file")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise FileProblem(f"cannot be read ({e.strerror or e.__class__.__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(f"cannot be read: it is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileProblem(f"is {st.st_size} bytes, more than the {limit} bytes allowed")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the file may grow after fstat: read at most limit + 1 bytes
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileProblem(f"is more than the {limit} bytes allowed")
        return b"".join(chunks)
    except OSError as e:
        raise FileProblem(f"cannot be read ({e.strerror or e.__class__.__name__})") from None
    finally:
        os.close(fd)


def read_config_text(path: Path, limit: int, what: str,
                     error: Callable[[list[str], str], Exception]) -> str:
    """A configuration file's text, read as read_small_file does and decoded as UTF-8;
    otherwise raises ``error([problem], str(path))`` with the problem named after ``what``
    (e.g. "config file 'x.yml'")."""
    try:
        data = read_small_file(path, limit)
    except FileProblem as e:
        raise error([f"{what} {e}"], str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error([f"{what} cannot be read: it is not UTF-8 text"], str(path)) from None


MAX_CA_BUNDLE_BYTES = 8 * 1_048_576  # the system bundle is about 200 KB


def ca_bundle_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot serve as a PEM bundle of CA certificates (a phrase to put after
    the path), or None when it can: it is read as read_small_file does, at most 8 MiB, and
    must hold at least one certificate OpenSSL accepts."""
    try:
        data = read_small_file(path, MAX_CA_BUNDLE_BYTES)
    except FileProblem as e:
        return str(e)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata=data.decode("latin-1"))
    except (ssl.SSLError, ValueError):
        return "holds no PEM certificate (expected a CA bundle: -----BEGIN CERTIFICATE-----)"
    return None
