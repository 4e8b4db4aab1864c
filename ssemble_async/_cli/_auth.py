"""The API key of the command line: ``--api-key``, else ``SSEMBLE_API_KEY``, else the file
``ssemble auth login`` saves.

The file is ``$XDG_CONFIG_HOME/ssemble/credentials`` (an absolute ``XDG_CONFIG_HOME``; else
``~/.config/ssemble/credentials``): the key on one line, readable by its owner alone. It
is written whole or not at all: a temporary file of mode 0600 from its creation, in the
same 0700 folder, synced, then renamed over the old one. A file that others may read, or
that belongs to another user, is refused, as ssh refuses such a private key.

A new key is never taken from the command line, where process listings show it: it is read
from a hidden prompt on a terminal, else from stdin (``echo $KEY | ssemble auth login``).
No message ever shows a key whole: `mask()` keeps its prefix and last four characters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import shlex
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from ssemble_async._cli._parser import EXIT_OK, PROG, CommandError, UsageError

__all__ = [
    "FoundKey",
    "credentials_file",
    "find_key",
    "forget_key",
    "forget_saved_key",
    "key_problem",
    "mask",
    "read_new_key",
    "read_saved_key",
    "save_key",
    "show_key",
    "store_new_key",
]

KEY_PREFIX = "sk_ssemble_"
ENV_KEY = "SSEMBLE_API_KEY"
#: Longer than any API key (real ones are 43 characters).
MAX_KEY_CHARS = 256
#: The last characters `mask()` shows, of a key with at least `MASK_MIN` after
#: the prefix (a shorter one would show most of itself).
MASK_TAIL, MASK_MIN = 4, 16
NO_KEY = f"no API key: run {PROG} auth login, pass --api-key or set {ENV_KEY}"


@dataclasses.dataclass(frozen=True)
class FoundKey:
    """A key and where it was found: ``--api-key``, ``SSEMBLE_API_KEY`` or ``file``."""

    key: str
    source: str
    path: Path | None = None

    def origin(self) -> str:
        """Where the key comes from, for a person."""
        if self.path is None:
            return self.source
        return f"{self.path} (saved by {PROG} auth login)"


def credentials_file(environ: Mapping[str, str]) -> Path | None:
    """Where ``ssemble auth login`` saves the key; None with no config folder to be found."""
    base = environ.get("XDG_CONFIG_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "ssemble" / "credentials"
    try:
        return Path.home() / ".config" / "ssemble" / "credentials"
    except RuntimeError:  # no home directory
        return None


def key_problem(key: str) -> str | None:
    """What makes ``key`` (stripped) no API key, or None when it has the shape of one."""
    if not key:
        return "is empty"
    if len(key) > MAX_KEY_CHARS:
        return "is too long to be an API key"
    if not all(char.isascii() and char.isprintable() and not char.isspace() for char in key):
        return "holds spaces or characters that no API key has"
    if not key.startswith(KEY_PREFIX) or key == KEY_PREFIX:
        return f"does not look like an API key: keys start with {KEY_PREFIX}"
    return None


def mask(key: str) -> str:
    """``sk_ssemble_…a1b2``: the prefix and the last four characters of a long key."""
    prefix = KEY_PREFIX if key.startswith(KEY_PREFIX) else ""
    rest = key[len(prefix) :]
    return f"{prefix}…{rest[-MASK_TAIL:] if len(rest) >= MASK_MIN else ''}"


def _refuse_shared(path: Path, status: os.stat_result) -> None:
    """Refuse a key file that someone else may read or change."""
    again = f"run {PROG} auth login again"
    if not stat.S_ISREG(status.st_mode):
        raise UsageError(f"{path} is not a file: remove it and {again}")
    if status.st_uid != os.getuid():
        raise UsageError(f"{path} belongs to another user: its API key is refused; {again}")
    if status.st_mode & 0o077:
        mode = stat.S_IMODE(status.st_mode)
        raise UsageError(
            f"{path} is open to others (mode {mode:03o}): its API key is refused;"
            f" run chmod 600 {shlex.quote(str(path))}"
        )


def read_saved_key(path: Path) -> str | None:
    """The key saved in ``path``; None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UsageError(f"{path}: cannot read the saved API key ({error.strerror})") from error
    try:
        _refuse_shared(path, os.fstat(fd))
        data = os.read(fd, MAX_KEY_CHARS + 2)  # a regular file: all of it up to that size
    finally:
        os.close(fd)
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    key = "" if text is None else text.strip()
    problem = "is not text" if text is None else key_problem(key)
    if problem is not None:
        raise UsageError(f"{path} holds no API key (it {problem}); run {PROG} auth login again")
    return key


def find_key(flag: str | None, environ: Mapping[str, str]) -> FoundKey | None:
    """The key the commands use: ``--api-key``, else ``SSEMBLE_API_KEY``, else the saved
    file (read only when needed); None when there is none. Blank values count as unset."""
    if flag is not None and flag.strip():
        return FoundKey(key=flag.strip(), source="--api-key")
    env = environ.get(ENV_KEY, "").strip()
    if env:
        return FoundKey(key=env, source=ENV_KEY)
    path = credentials_file(environ)
    key = None if path is None else read_saved_key(path)
    return None if key is None or path is None else FoundKey(key=key, source="file", path=path)


def _typed_or_piped(stdin: TextIO) -> str | None:
    """The text typed at a hidden prompt on a terminal, else read from stdin; None when it
    is not text."""
    if stdin.isatty():
        try:
            return getpass.getpass("API key (typing is hidden): ")
        except EOFError:  # Ctrl-D at the prompt
            return ""
    data = stdin.buffer.read(MAX_KEY_CHARS + 2)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_new_key(flag: str | None, stdin: TextIO) -> str:
    """The key to save: typed at a hidden prompt on a terminal, else read from stdin."""
    if flag is not None:
        raise UsageError(
            f"{PROG} auth login takes the key from a hidden prompt or from stdin, never from"
            f" --api-key (process listings show it): echo $KEY | {PROG} auth login"
        )
    where = "typed" if stdin.isatty() else "read from stdin"
    text = _typed_or_piped(stdin)
    key = "" if text is None else text.strip()
    problem = "is not text" if text is None else key_problem(key)
    if problem is not None:
        raise UsageError(f"the key {where} {problem}; nothing was saved")
    return key


def save_key(path: Path, key: str) -> None:
    """Write ``key`` to ``path`` whole or not at all, mode 0600 from the first byte, in a
    folder of mode 0700."""
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".credentials-", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_fd)  # the rename itself survives a crash
    finally:
        os.close(folder_fd)


def forget_saved_key(path: Path) -> bool:
    """Delete the saved key; False when there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# -- the commands ---------------------------------------------------------------------------


def _note(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr)


def _where_saved(environ: Mapping[str, str]) -> Path:
    path = credentials_file(environ)
    if path is None:
        raise UsageError("no home directory to save the API key in: set XDG_CONFIG_HOME")
    return path


def store_new_key(key: str, *, as_json: bool, quiet: bool, verified: bool) -> int:
    """``ssemble auth login``, once the key is read (and verified when asked)."""
    path = _where_saved(os.environ)
    save_key(path, key)
    if as_json:
        print(json.dumps({"saved": str(path), "key": mask(key), "verified": verified}))
    elif quiet:
        print(path)
    else:
        checked = "checked with the API, " if verified else ""
        print(f"API key {mask(key)} {checked}saved in {path} (readable by you alone)")
        if os.environ.get(ENV_KEY, "").strip():
            _note(f"{ENV_KEY} is set, and comes first: unset it to use the saved key")
    return EXIT_OK


def show_key(flag: str | None, *, as_json: bool, quiet: bool) -> int:
    """``ssemble auth status``: which key the commands use, and where it comes from."""
    found = find_key(flag, os.environ)
    if found is None:
        raise CommandError(NO_KEY)
    path = credentials_file(os.environ)
    unused = path if found.path is None and path is not None and path.exists() else None
    problem = key_problem(found.key)
    if as_json:
        data = {
            "source": found.source,
            "path": None if found.path is None else str(found.path),
            "key": mask(found.key),
            "problem": problem,
            "unused_saved_key": None if unused is None else str(unused),
        }
        print(json.dumps(data))
    elif quiet:
        print(found.source if found.path is None else found.path)
    else:
        print(f"API key {mask(found.key)}, from {found.origin()}")
        if problem is not None:
            _note(f"warning: this key {problem}")
        if unused is not None:
            _note(f"the key saved in {unused} is not used: {found.source} comes first")
    return EXIT_OK


def forget_key(*, as_json: bool, quiet: bool) -> int:
    """``ssemble auth logout``: delete the saved key (none saved is no error)."""
    path = _where_saved(os.environ)
    removed = forget_saved_key(path)
    if as_json:
        print(json.dumps({"removed": str(path) if removed else None}))
    elif removed:
        print(path if quiet else f"removed the API key saved in {path}")
    elif not quiet:
        print(f"no API key saved in {path}: nothing removed")
    if not as_json and not quiet and os.environ.get(ENV_KEY, "").strip():
        _note(f"{ENV_KEY} is still set: the commands use it")
    return EXIT_OK
