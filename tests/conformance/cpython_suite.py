"""CPython's ``test_concurrent_futures``: the interpreter's, else 3.11's fetched.

:func:`load_test_concurrent_futures` returns the suite as one namespace, a
:class:`SuiteView`, from one of two sources:

* **The interpreter's own package** whenever ``import test.test_concurrent_
  futures`` works: CPython 3.13 here, and the 3.11.6+ and 3.12 builds that
  ship it (CPython split the file into a package, ``util.py``,
  ``executor.py`` and one ``test_*.py`` per topic, in 3.11.6).  Its
  submodules are imported by their real names, so spawn and forkserver
  workers and the child interpreters of the shutdown tests import them as
  CPython's own do.
* **CPython 3.11's single file, fetched**, on a 3.11 that lacks the package
  (this machine's 3.11.7, like many distributions' builds, ships
  ``test.lock_tests``, ``test.test_queue``... but not
  ``test.test_concurrent_futures``).  Debian's ``libpython3.11-testsuite``
  carries it (``usr/lib/python3.11/test/test_concurrent_futures.py``, the
  layout of 3.11.0-3.11.5).  No package carries 3.12's, so a 3.12 without
  the package skips with that reason.

The rest of this docstring is the fetch, which obtains the file without
ever putting it in the repository:

1. **Cache.**  The extracted file lives in ``$TRESS_CPYTHON_TESTS_CACHE``, else
   ``$XDG_CACHE_HOME/tress/cpython-tests``, else ``~/.cache/tress/cpython-
   tests`` (a per-user temp directory if none of these is writable), next to
   a ``.source.json`` recording the package, its version and the file's
   SHA-256.  A cached copy whose hash matches is reused: no apt, no network.
   A directory inside the repository is refused.
2. **Download** (only on a cache miss): ``apt-get download
   libpython3.11-testsuite`` in a scratch directory under the cache.  apt
   checks the file against the signed index of the machine's apt sources.
   When that fails (no package lists, as in images that delete
   ``/var/lib/apt/lists``; a stale list whose version the mirror dropped),
   the helper runs ``apt-get update`` once into a *private* state directory
   under the cache (``-o Dir::State::Lists=... -o Dir::Cache=...``: the
   machine's own apt sources and keys, no root needed, the system's apt
   state untouched) and downloads with it; the private lists (~26 MB) are
   deleted afterwards.  Every subprocess has a timeout.  No network besides
   the apt repositories.
3. **Extract** in pure Python: the ``.deb`` is an ``ar`` archive; its
   ``control.tar.*`` and ``data.tar.*`` are read with :mod:`tarfile`, which
   handles xz (what Debian uses for this package), gzip, bzip2 and plain tar.
   A ``.zst`` member (Ubuntu's choice since 21.10) needs a tool:
   ``dpkg-deb --fsys-tarfile`` / ``--ctrl-tarfile``, else ``zstd -dc``.
4. **Verify**: the control file names ``libpython3.11-testsuite`` at a
   released 3.11 version (``3.11.N-...``, no ``~rc``/``~b``), the archive has
   the single-file layout, and the file defines what the binding uses
   (``ThreadPoolMixin``, the three ``ProcessPool*Mixin``,
   ``create_executor_tests``, ``FutureTests``).
5. **Import**: :func:`load_file` puts a copy of the file
   named ``cpython311_test_concurrent_futures.py`` in ``<cache>/importable/``,
   appends that directory to ``sys.path`` and imports the copy under that
   name, against this interpreter's ``test.support`` (3.11 only).  The name
   is importable, so worker processes started with spawn or forkserver (which
   receive the parent's ``sys.path``) unpickle the file's functions (``mul``,
   ``init_fail``, ``_crash``...) by reference, as CPython's workers import
   ``test.test_concurrent_futures``.

Any failure raises :class:`SuiteUnavailable` with a precise reason, which the
conformance modules turn into a module-level skip.

The second half of this module is what both binding modules
(``test_concurrent_futures_conformance.py`` for the thread-pool classes and
``FutureTests``, ``test_concurrent_futures_process_conformance.py`` for the
process-pool classes) share, since they bind one imported suite:
:func:`import_target` (the executor module under test, from
``TRESS_FUTURES_CONFORMANCE_TARGET``), :class:`FuturesView` and
:func:`bind_test_concurrent_futures`, which rebinds the global ``futures``
and ``assert_python_ok`` of every module of the suite that has them, once
for both (:func:`rebind`; see :func:`child_code` for the child
interpreters); :func:`bind_or_skip` is how the modules call it.

``python tests/conformance/cpython_suite.py`` fetches (or finds) the file and
prints its path and provenance: a CI job can warm the cache with it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import io
import json
import os
import pkgutil
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import types
import unittest
import unittest.mock
from pathlib import Path

PACKAGE = "libpython3.11-testsuite"
MEMBER = "usr/lib/python3.11/test/test_concurrent_futures.py"
SPLIT_MEMBER = "usr/lib/python3.11/test/test_concurrent_futures/__init__.py"
FILENAME = "test_concurrent_futures.py"
# The name the loaded file gets in sys.modules.  Not `test.test_concurrent_
# futures`: that could be a different version shipped by another interpreter.
MODULE_NAME = "cpython311_test_concurrent_futures"
# What the binding needs from the file (CPython 3.11's single-file layout).
REQUIRED_MARKERS = (
    "class ThreadPoolMixin(ExecutorMixin):",
    "class ProcessPoolForkMixin(ExecutorMixin):",
    "class ProcessPoolSpawnMixin(ExecutorMixin):",
    "class ProcessPoolForkserverMixin(ExecutorMixin):",
    "def create_executor_tests(",
    "class FutureTests(BaseTestCase):",
)
# Where the importable copy lives, under the cache directory.
IMPORTABLE_DIR = "importable"
VERSION_RE = re.compile(r"^(?:\d+:)?3\.11\.\d+-[0-9A-Za-z.+]+$")  # Debian's: 3.11.2-6+deb12u7

APT_DOWNLOAD_TIMEOUT = 90.0
APT_UPDATE_TIMEOUT = 150.0
TOOL_TIMEOUT = 60.0

REPO_ROOT = Path(__file__).resolve().parents[2]


class SuiteUnavailable(Exception):
    """CPython's test file cannot be had here; ``str(exc)`` says why."""


# --------------------------------------------------------------------------
# cache location


def cache_dir() -> Path:
    """The directory holding the extracted file (created on demand)."""
    explicit = os.environ.get("TRESS_CPYTHON_TESTS_CACHE")
    if explicit:
        candidates = [Path(explicit)]
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg else Path.home() / ".cache"
        candidates = [
            base / "tress" / "cpython-tests",
            Path(tempfile.gettempdir()) / f"tress-cpython-tests-{os.getuid()}",
        ]
    errors = []
    for path in candidates:
        path = path.expanduser().resolve()
        if path == REPO_ROOT or REPO_ROOT in path.parents:
            errors.append(
                f"{path} is inside the repository ({REPO_ROOT}); CPython's file must not land there"
            )
            continue
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path):
                pass
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        return path
    raise SuiteUnavailable(
        "no usable cache directory for CPython's test file: " + "; ".join(errors)
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached(directory: Path):
    path = directory / FILENAME
    meta_path = directory / (FILENAME + ".source.json")
    try:
        meta = json.loads(meta_path.read_text())
        data = path.read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("sha256") != _sha256(data):
        return None
    return path, meta


# --------------------------------------------------------------------------
# .deb handling (pure Python, tools only for zstd)


def ar_members(data: bytes) -> dict[str, bytes]:
    """The members of a (System V / GNU) ``ar`` archive, as a .deb is."""
    if not data.startswith(b"!<arch>\n"):
        raise SuiteUnavailable("not a .deb: missing the ar magic '!<arch>'")
    members = {}
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        if header[58:60] != b"`\n":
            raise SuiteUnavailable(f"corrupt .deb: bad ar header at offset {pos}")
        name = header[0:16].decode("ascii", "replace").rstrip(" ").rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = pos + 60
        if start + size > len(data):
            raise SuiteUnavailable(f"corrupt .deb: ar member {name!r} is truncated")
        members[name] = data[start : start + size]
        pos = start + size + (size & 1)  # members are 2-byte aligned
    return members


def _run_tool(cmd, stdin_bytes=None, timeout=TOOL_TIMEOUT) -> bytes:
    try:
        proc = subprocess.run(
            cmd, input=stdin_bytes, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise SuiteUnavailable(
            f"`{' '.join(map(str, cmd))}` did not finish in {timeout:.0f} s"
        ) from None
    except OSError as exc:
        raise SuiteUnavailable(f"`{cmd[0]}` cannot run: {exc}") from None
    if proc.returncode != 0:
        raise SuiteUnavailable(
            f"`{' '.join(map(str, cmd))}` failed (exit {proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return proc.stdout


def _tar_bytes(members: dict[str, bytes], prefix: str, deb_path: Path | None) -> tuple[bytes, str]:
    """The (possibly compressed) tarball ``prefix.tar*`` and how to open it.

    Returns ``(data, mode)`` for :func:`tarfile.open`; a zstd member is
    decompressed with ``dpkg-deb`` or ``zstd`` first.
    """
    names = [n for n in members if n == f"{prefix}.tar" or n.startswith(f"{prefix}.tar.")]
    if len(names) != 1:
        raise SuiteUnavailable(
            f"corrupt .deb: expected one {prefix}.tar* member, found {sorted(members)}"
        )
    name = names[0]
    data = members[name]
    suffix = name[len(prefix) + len(".tar") :]
    if suffix in ("", ".gz", ".bz2", ".xz"):
        return data, "r:*"
    if suffix == ".zst":
        reasons = []
        dpkg_deb = shutil.which("dpkg-deb")
        if dpkg_deb and deb_path is not None:
            option = "--fsys-tarfile" if prefix == "data" else "--ctrl-tarfile"
            try:
                return _run_tool([dpkg_deb, option, str(deb_path)]), "r:"
            except SuiteUnavailable as exc:
                reasons.append(str(exc))
        else:
            reasons.append("dpkg-deb is not installed")
        zstd = shutil.which("zstd")
        if zstd:
            try:
                return _run_tool([zstd, "-dc", "-q"], stdin_bytes=data), "r:"
            except SuiteUnavailable as exc:
                reasons.append(str(exc))
        else:
            reasons.append("zstd is not installed")
        raise SuiteUnavailable(
            f"{name} is zstd-compressed, which Python 3.11's tarfile cannot read, and no "
            f"tool could decompress it ({'; '.join(reasons)}); install dpkg or zstd"
        )
    raise SuiteUnavailable(f"{name}: unsupported compression {suffix!r}")


def _open_tar(members, prefix, deb_path):
    data, mode = _tar_bytes(members, prefix, deb_path)
    try:
        return tarfile.open(fileobj=io.BytesIO(data), mode=mode)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SuiteUnavailable(f"corrupt .deb: cannot read {prefix}.tar: {exc}") from None


def _normalize(name: str) -> str:
    return name[2:] if name.startswith("./") else name.lstrip("/")


def read_control(members, deb_path=None) -> dict[str, str]:
    with _open_tar(members, "control", deb_path) as tar:
        for info in tar:
            if _normalize(info.name) == "control" and info.isfile():
                text = tar.extractfile(info).read().decode("utf-8", "replace")
                break
        else:
            raise SuiteUnavailable("corrupt .deb: control.tar has no control file")
    fields = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9-]+):\s*(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def extract_from_deb(deb_path: Path) -> tuple[bytes, dict[str, str]]:
    """``(file bytes, control fields)`` of CPython's test file in the .deb."""
    try:
        data = deb_path.read_bytes()
    except OSError as exc:
        raise SuiteUnavailable(f"cannot read {deb_path}: {exc}") from None
    members = ar_members(data)
    control = read_control(members, deb_path)
    package, version = control.get("Package"), control.get("Version", "")
    if package != PACKAGE:
        raise SuiteUnavailable(f"{deb_path.name} is package {package!r}, not {PACKAGE}")
    if not VERSION_RE.match(version):
        raise SuiteUnavailable(
            f"{PACKAGE} {version} is not a released CPython 3.11 "
            "(expected 3.11.N-<debian revision>)"
        )
    found = None
    split = False
    with _open_tar(members, "data", deb_path) as tar:
        for info in tar:
            name = _normalize(info.name)
            if name == MEMBER and info.isfile():
                found = tar.extractfile(info).read()
            elif name == SPLIT_MEMBER:
                split = True
    if found is None:
        if split:
            raise SuiteUnavailable(
                f"{PACKAGE} {version} carries test_concurrent_futures as a package (the layout "
                "of CPython >= 3.11.6), not the single file this harness binds"
            )
        raise SuiteUnavailable(f"{PACKAGE} {version} has no {MEMBER}")
    return found, control


def verify_source(data: bytes, origin: str) -> None:
    text = data.decode("utf-8", "replace")
    missing = [m for m in REQUIRED_MARKERS if m not in text]
    if missing:
        raise SuiteUnavailable(
            f"{origin} is not CPython 3.11's single-file test_concurrent_futures.py: "
            f"it lacks {missing}"
        )


# --------------------------------------------------------------------------
# apt


def _apt_env():
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def _apt(cmd, cwd, timeout):
    """Run an apt command; ``(ok, output tail)``."""
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=_apt_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s"
    except OSError as exc:
        return False, f"`{cmd[0]}` cannot run: {exc}"
    output = (proc.stdout + proc.stderr).strip()
    # Keep errors, drop the progress lines and the harmless sandbox warning.
    errors = [
        line
        for line in output.splitlines()
        if line.startswith(("E:", "W:", "Err:")) and "unsandboxed" not in line
    ]
    tail = "; ".join(errors[-4:]) or output[-400:]
    if proc.returncode != 0:
        return False, f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {tail}"
    return True, tail


def _downloaded_deb(directory: Path):
    debs = sorted(directory.glob(f"{PACKAGE}_*.deb"))
    return debs[-1] if debs else None


def download_deb(scratch: Path) -> tuple[Path, list[str]]:
    """Download the package into ``scratch``; ``(path, log of what was tried)``."""
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise SuiteUnavailable(
            f"apt-get is not installed: {PACKAGE} (Debian's copy of CPython 3.11's test suite) "
            "can only be fetched from the machine's apt repositories"
        )
    log = []
    t0 = time.monotonic()
    ok, out = _apt([apt_get, "download", PACKAGE], scratch, APT_DOWNLOAD_TIMEOUT)
    deb = _downloaded_deb(scratch)
    if ok and deb is not None:
        log.append(
            f"apt-get download with the system's package lists: {time.monotonic() - t0:.1f} s"
        )
        return deb, log
    log.append(f"apt-get download with the system's package lists failed: {out}")

    # A private apt state: the machine's sources and keys, our own lists.
    state = scratch / "apt-state"
    lists = state / "lists"
    cache = state / "cache"
    for d in (lists / "partial", cache / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    options = ["-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}"]
    t0 = time.monotonic()
    ok, out = _apt([apt_get, "-q", *options, "update"], scratch, APT_UPDATE_TIMEOUT)
    if not ok:
        log.append(f"apt-get update into a private state directory failed: {out}")
        raise SuiteUnavailable(f"cannot download {PACKAGE}: " + " | ".join(log))
    log.append(f"apt-get update into a private state directory: {time.monotonic() - t0:.1f} s")
    t0 = time.monotonic()
    ok, out = _apt([apt_get, *options, "download", PACKAGE], scratch, APT_DOWNLOAD_TIMEOUT)
    deb = _downloaded_deb(scratch)
    if not ok or deb is None:
        log.append(
            f"apt-get download with the private package lists failed: {out or 'no .deb written'}"
        )
        raise SuiteUnavailable(
            f"cannot download {PACKAGE} (do the machine's apt sources include Debian bookworm "
            "or another release that carries it?): " + " | ".join(log)
        )
    log.append(f"apt-get download with the private package lists: {time.monotonic() - t0:.1f} s")
    return deb, log


# --------------------------------------------------------------------------
# entry points


def fetch() -> tuple[Path, dict]:
    """Path of CPython 3.11's ``test_concurrent_futures.py`` and its provenance.

    Raises :class:`SuiteUnavailable` with the reason when it cannot be had.
    """
    directory = cache_dir()
    hit = _cached(directory)
    if hit is not None:
        return hit
    scratch = Path(tempfile.mkdtemp(prefix="fetch-", dir=directory))
    try:
        t0 = time.monotonic()
        deb, log = download_deb(scratch)
        t1 = time.monotonic()
        data, control = extract_from_deb(deb)
        verify_source(data, f"{deb.name}:{MEMBER}")
        meta = {
            "package": control["Package"],
            "version": control["Version"],
            "deb": deb.name,
            "deb_sha256": _sha256(deb.read_bytes()),
            "member": MEMBER,
            "sha256": _sha256(data),
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "log": log + [f"extraction (pure-Python ar + tarfile): {time.monotonic() - t1:.2f} s"],
            "seconds": round(time.monotonic() - t0, 2),
        }
        # Atomic: a concurrent fetch or an interrupted one leaves no half file.
        tmp_file = scratch / FILENAME
        tmp_file.write_bytes(data)
        tmp_meta = scratch / "meta.json"
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp_file, directory / FILENAME)
        os.replace(tmp_meta, directory / (FILENAME + ".source.json"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    hit = _cached(directory)
    if hit is None:
        raise SuiteUnavailable(
            f"the file written to {directory} did not read back (a concurrent fetch?)"
        )
    return hit


def importable_copy(path: Path) -> Path:
    """``<cache>/importable/<MODULE_NAME>.py``: the file, under the name it is
    imported as (written atomically when missing or different)."""
    data = path.read_bytes()
    directory = path.parent / IMPORTABLE_DIR
    copy = directory / f"{MODULE_NAME}.py"
    try:
        if copy.read_bytes() == data:
            return copy
    except OSError:
        pass
    tmp = None
    try:
        directory.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, copy)  # atomic: a concurrent run never imports half a file
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise SuiteUnavailable(f"cannot write the importable copy {copy}: {exc}") from None
    return copy


def load_file():
    """Fetch, verify and import CPython 3.11's file as :data:`MODULE_NAME`.

    Returns ``(module, path, provenance)``; ``path`` is the imported copy,
    whose directory is on ``sys.path`` (so spawn and forkserver workers, which
    get the parent's ``sys.path``, import it by name).
    """
    fetched, meta = fetch()
    verify_source(fetched.read_bytes(), str(fetched))
    path = importable_copy(fetched)
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME], path, meta
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except unittest.SkipTest as exc:  # e.g. no _multiprocessing, an ASAN build
        del sys.modules[MODULE_NAME]
        raise SuiteUnavailable(
            f"CPython's test_concurrent_futures skips itself here: {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        del sys.modules[MODULE_NAME]
        raise SuiteUnavailable(
            f"{path} ({meta.get('package')} {meta.get('version')}) does not import against this "
            f"interpreter's test.support ({platform.python_version()}): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return module, path, meta


# The interpreter's own suite: a package since CPython 3.11.6 (util.py,
# executor.py and one test_*.py per topic).
PACKAGE_MODULE = "test.test_concurrent_futures"
# The package's submodules a name is looked up in first (the shared helpers);
# the others follow in name order.
FIRST_SUBMODULES = ("util", "executor")


def import_package():
    """The interpreter's ``test.test_concurrent_futures`` package, or None
    when this interpreter does not ship it."""
    try:
        return importlib.import_module(PACKAGE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == PACKAGE_MODULE:
            return None
        raise SuiteUnavailable(
            f"this interpreter's {PACKAGE_MODULE} does not import: {type(exc).__name__}: {exc}"
        ) from None
    except unittest.SkipTest as exc:  # e.g. an ASAN build
        raise SuiteUnavailable(f"CPython's {PACKAGE_MODULE} skips itself here: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        raise SuiteUnavailable(
            f"this interpreter's {PACKAGE_MODULE} does not import: {type(exc).__name__}: {exc}"
        ) from None


def package_submodules(package):
    """The package's submodules, imported by their real names, helpers first."""
    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
    names = [n for n in FIRST_SUBMODULES if n in names] + [
        n for n in names if n not in FIRST_SUBMODULES
    ]
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(f"{package.__name__}.{name}"))
        except unittest.SkipTest as exc:
            raise SuiteUnavailable(
                f"CPython's {package.__name__}.{name} skips itself here: {exc}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - reported as the skip reason
            raise SuiteUnavailable(
                f"this interpreter's {package.__name__}.{name} does not import: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    return modules


class SuiteView(types.ModuleType):
    """CPython's test_concurrent_futures seen as one namespace.

    ``modules`` are the suite's modules: 3.11's single file, or the package's
    submodules (``util``, ``executor``, then the ``test_*``).  An attribute
    of the view is the global of that name of the first of them that has one
    (``tcf.FutureTests``, ``tcf.ThreadPoolMixin``, ``tcf.mul``...).  The view
    holds no names of its own: a global of the suite is rebound with
    :func:`rebind`, in every module that has it (each submodule imports
    ``futures``, ``Future``... itself).  ``layout`` is ``"file"`` or
    ``"package"``; ``path`` the file imported (the importable copy) or the
    package's directory; ``provenance`` a dict saying where it came from."""

    def __init__(self, name, modules, *, layout, path, provenance):
        super().__init__(name)
        self.__dict__.update(
            modules=tuple(modules), layout=layout, path=path, provenance=provenance
        )

    def __getattr__(self, name):
        for module in self.__dict__["modules"]:
            namespace = vars(module)
            if name in namespace:
                return namespace[name]
        raise AttributeError(f"no module of {self.__name__} has a global {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError(
            f"{self.__name__} is a view: rebind {name!r} in its modules with cpython_suite.rebind"
        )

    def modules_with(self, name):
        """The suite's modules that have a global ``name``."""
        return [m for m in self.modules if name in vars(m)]

    def test_classes(self):
        """``{name: class}`` of every ``unittest.TestCase`` subclass among the
        suite's globals (a name is one class across the modules)."""
        classes = {}
        for module in self.modules:
            for name, obj in vars(module).items():
                if isinstance(obj, type) and issubclass(obj, unittest.TestCase):
                    if classes.setdefault(name, obj) is not obj:
                        raise AssertionError(f"two classes named {name} in {self.__name__}")
        return classes


def rebind(tcf, name, value):
    """Sets the global ``name`` to ``value`` in every module of the suite
    ``tcf`` that has it (an error if none has); returns the function that
    puts the old values back."""
    modules = tcf.modules_with(name)
    if not modules:
        raise AssertionError(f"harness: no module of {tcf.__name__} has a global {name!r}")
    saved = [(m, vars(m)[name]) for m in modules]
    for module in modules:
        setattr(module, name, value)

    def undo():
        for module, old in saved:
            setattr(module, name, old)

    return undo


def load_test_concurrent_futures():
    """CPython's ``test_concurrent_futures`` as a :class:`SuiteView`.

    The interpreter's own package whenever ``import test.test_concurrent_
    futures`` works (CPython 3.13, and the 3.11.6+/3.12 builds that ship it),
    imported by its real names: spawn and forkserver workers and the child
    interpreters import it as CPython's do.  Else, on CPython 3.11 only,
    3.11's single file fetched from Debian (:func:`fetch`, :func:`load_file`).
    Raises :class:`SuiteUnavailable` with the reason otherwise."""
    try:
        import test.support  # noqa: F401
    except ImportError as exc:
        raise SuiteUnavailable(
            f"this interpreter does not ship its `test` package ({exc}), which CPython's "
            "test_concurrent_futures imports (test.support)"
        ) from None
    package = import_package()
    if package is not None:
        return SuiteView(
            package.__name__,
            package_submodules(package),
            layout="package",
            path=Path(package.__file__).parent,
            provenance={
                "source": f"this interpreter's {package.__name__}",
                "python": platform.python_version(),
                "path": str(Path(package.__file__).parent),
            },
        )
    if sys.version_info[:2] != (3, 11):
        raise SuiteUnavailable(unavailable_reason(platform.python_version()))
    module, path, meta = load_file()
    return SuiteView(module.__name__, [module], layout="file", path=path, provenance=meta)


def unavailable_reason(version):
    """Why the suite cannot be had on an interpreter ``version`` (not 3.11)
    that does not ship the package."""
    return (
        f"this interpreter ({version}) does not ship {PACKAGE_MODULE} and only CPython "
        f"3.11's file can be fetched (Debian's {PACKAGE})"
    )


# --------------------------------------------------------------------------
# binding the file to the executors under test (both binding modules)

TARGET_ENV = "TRESS_FUTURES_CONFORMANCE_TARGET"
DEFAULT_TARGET = "tress.futures"
# The executors the file's global `futures` names that the binding rebinds.
EXECUTOR_NAMES = ("ThreadPoolExecutor", "ProcessPoolExecutor")
# How the child interpreters of the shutdown tests import the executor.
CHILD_IMPORTS = tuple(f"from concurrent.futures import {name}" for name in EXECUTOR_NAMES)
# What the child code imports the suite as (the package's name).
CHILD_MODULE = PACKAGE_MODULE


class TargetUnavailable(Exception):
    """The executor module under test does not import; ``str(exc)`` says why."""


def import_target():
    """``(name, module)`` of the executor module under test:
    ``$TRESS_FUTURES_CONFORMANCE_TARGET``, default ``tress.futures``."""
    name = os.environ.get(TARGET_ENV, DEFAULT_TARGET)
    try:
        return name, importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - not built yet, or a broken build
        raise TargetUnavailable(
            f"{name} is not importable ({type(exc).__name__}: {exc}); build and install "
            "tress with `pip install --no-build-isolation --force-reinstall --no-deps .` "
            f"({TARGET_ENV}=concurrent.futures runs this harness on the stdlib)"
        ) from None


class FuturesView(types.ModuleType):
    """``concurrent.futures``, except that ``ThreadPoolExecutor`` and
    ``ProcessPoolExecutor`` are the target's."""

    def __getattr__(self, name):
        return getattr(concurrent.futures, name)


def target_import_root(target_name):
    """The sys.path entry the parent imported the target's top-level package from."""
    top = importlib.import_module(target_name.partition(".")[0])
    origin = getattr(top, "__file__", None)
    if origin is None:  # a namespace package
        return None
    origin = os.path.dirname(os.path.abspath(origin))
    return os.path.dirname(origin) if hasattr(top, "__path__") else origin


def target_path_prelude(target_name):
    """Child code that puts the directory the parent imported the target
    from first on the child's ``sys.path`` when it is not there (a source
    tree on ``PYTHONPATH``, which the isolated mode of ``assert_python_ok``
    ignores)."""
    root = target_import_root(target_name)
    return f"""\
import sys as _tress_sys
if {root!r} not in (None, *_tress_sys.path):
    _tress_sys.path.insert(0, {root!r})
"""


def child_prelude(target_name, importable_dir=None):
    """What the child interpreters' code starts with.

    The directory the target was imported from goes first on the child's
    ``sys.path`` when it is not there (a source tree on ``PYTHONPATH``, which
    isolated mode ignores).  That is all when the child has the real
    ``test.test_concurrent_futures`` package (``importable_dir`` None: the
    interpreter ships it).  For 3.11's fetched file, the directory of the
    importable copy, ``importable_dir``, goes last on the child's
    ``sys.path`` and ``test.test_concurrent_futures`` is an alias module
    whose attributes are those of :data:`MODULE_NAME` (imported on first
    use).  The functions the child gets from it keep ``__module__ ==
    MODULE_NAME``, which the child's own spawn or forkserver workers import
    by name: they get the child's ``sys.path``, not its ``sys.modules``."""
    if importable_dir is None:
        return target_path_prelude(target_name)
    return target_path_prelude(target_name) + f"""\
import types as _tress_types
if {str(importable_dir)!r} not in _tress_sys.path:
    _tress_sys.path.append({str(importable_dir)!r})
def _tress_test_module_getattr(name):
    import importlib
    return getattr(importlib.import_module({MODULE_NAME!r}), name)
_tress_alias = _tress_types.ModuleType({CHILD_MODULE!r})
_tress_alias.__getattr__ = _tress_test_module_getattr
_tress_sys.modules.setdefault({CHILD_MODULE!r}, _tress_alias)
del _tress_alias, _tress_test_module_getattr
"""


def child_code(code, target_name, prelude):
    """The child's ``-c`` code with the prelude and the target's executor.

    The child code imports its executor with ``from concurrent.futures import
    ThreadPoolExecutor`` (or ``ProcessPoolExecutor``); for a target other than
    ``concurrent.futures`` that line must occur exactly once and imports from
    the target instead."""
    if target_name != "concurrent.futures":
        found = [(line, code.count(line)) for line in CHILD_IMPORTS if line in code]
        if len(found) != 1 or found[0][1] != 1:
            raise AssertionError(
                f"harness: expected the child code to contain exactly one of {CHILD_IMPORTS}, "
                f"once; found {found}:\n{code}"
            )
        line = found[0][0]
        code = code.replace(line, line.replace("concurrent.futures", target_name))
    return prelude + code


class Binding(types.SimpleNamespace):
    """What :func:`bind_test_concurrent_futures` set up (attributes: ``tcf``,
    ``path``, ``meta``, ``target_name``, ``target``, ``stdlib``,
    ``futures_view``, ``prelude``, ``child_code``, ``assert_python_ok``,
    ``stdlib_assert_python_ok``)."""


_binding = None


def bind_test_concurrent_futures():
    """Import the target and the suite, and rebind the suite's names that
    refer to the executors, in every module of the suite that has them (the
    suite's modules only: ``concurrent.futures`` itself is never patched):

    * the global ``futures`` becomes a :class:`FuturesView` whose
      ``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` are the target's (the
      tests that write ``futures.XPoolExecutor(...)`` out);
    * ``assert_python_ok`` runs the child code through :func:`child_code`.

    Done once per process; both binding modules get the same :class:`Binding`.
    Raises :class:`TargetUnavailable` or :class:`SuiteUnavailable`."""
    global _binding
    if _binding is not None:
        return _binding
    target_name, target = import_target()
    tcf = load_test_concurrent_futures()
    view = FuturesView(
        "concurrent.futures",
        f"concurrent.futures with ThreadPoolExecutor and ProcessPoolExecutor = {target_name}'s",
    )
    for name in EXECUTOR_NAMES:
        setattr(view, name, getattr(target, name))
    prelude = child_prelude(target_name, tcf.path.parent if tcf.layout == "file" else None)
    originals = {id(vars(m)["assert_python_ok"]) for m in tcf.modules_with("assert_python_ok")}
    if len(originals) != 1:
        raise AssertionError(
            f"harness: expected one assert_python_ok in {tcf.__name__}, found {len(originals)}"
        )
    stdlib_assert_python_ok = tcf.assert_python_ok

    def bound_child_code(code):
        return child_code(code, target_name, prelude)

    def assert_python_ok(*args, **env_vars):
        args = list(args)
        i = args.index("-c")
        args[i + 1] = bound_child_code(args[i + 1])
        return stdlib_assert_python_ok(*args, **env_vars)

    rebind(tcf, "futures", view)
    rebind(tcf, "assert_python_ok", assert_python_ok)
    _binding = Binding(
        tcf=tcf,
        path=tcf.path,
        meta=tcf.provenance,
        target_name=target_name,
        target=target,
        stdlib=target is concurrent.futures,
        futures_view=view,
        prelude=prelude,
        child_code=bound_child_code,
        assert_python_ok=assert_python_ok,
        stdlib_assert_python_ok=stdlib_assert_python_ok,
    )
    return _binding


def bind_or_skip():
    """:func:`bind_test_concurrent_futures` for a binding test module: when
    the target or the suite cannot be had, the whole module is skipped with
    the reason (``pytest.skip(..., allow_module_level=True)``; pytest is
    imported only then, so this module runs without it)."""
    try:
        return bind_test_concurrent_futures()
    except TargetUnavailable as exc:
        reason = str(exc)
    except SuiteUnavailable as exc:
        reason = f"CPython's test_concurrent_futures is not available: {exc}"
    import pytest

    pytest.skip(reason, allow_module_level=True)


# --------------------------------------------------------------------------
# binding test._test_multiprocessing (test_mp_conformance.py for the queues and
# locks, test_mp_pool_conformance.py for the pools)
#
# CPython's module ships with this interpreter (no fetch). Its test classes
# reach their subject through a mixin (``self.Queue()``, ``self.Pool(3)``) or,
# in some tests, through the module's global ``multiprocessing``; the helpers
# below bind both, per start method, without copying any test code.


def _skip_module(reason):
    import pytest

    pytest.skip(reason, allow_module_level=True)


def import_test_multiprocessing_or_skip():
    """``test._test_multiprocessing``, or the whole binding module skipped
    with the reason."""
    try:
        from test import _test_multiprocessing
    except (ImportError, unittest.SkipTest) as exc:  # no `test` package, or CPython skips it
        _skip_module(
            f"CPython's test._test_multiprocessing cannot be imported "
            f"({type(exc).__name__}: {exc}): this interpreter does not ship the `test` "
            "package (e.g. Debian's python3-test is missing) or CPython skips the suite here"
        )
    return _test_multiprocessing


def import_mp_target_or_skip(env, default):
    """``(name, module)`` of the module under test (``$env``, else
    ``default``), or the whole binding module skipped with the reason."""
    name = os.environ.get(env, default)
    try:
        return name, importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - not built yet, or a broken build
        _skip_module(
            f"{name} is not importable ({type(exc).__name__}: {exc}); build and install "
            "tress with `pip install --no-build-isolation --force-reinstall --no-deps .`"
        )


def mp_start_methods():
    """The start methods to bind: ``$TRESS_MP_START_METHODS``, default
    ``fork,spawn,forkserver``."""
    methods = os.environ.get("TRESS_MP_START_METHODS", "fork,spawn,forkserver")
    return tuple(m for m in methods.split(",") if m)


def divergence(test, reason, stdlib):
    """``test`` run on the stdlib (``stdlib`` true), skipped with ``reason``
    (prefixed "DIVERGENCE:") on tress."""

    @functools.wraps(test)
    def wrapper(self, *args, **kwargs):
        if stdlib:
            return test(self, *args, **kwargs)
        self.skipTest(f"DIVERGENCE: {reason} (see tests/conformance/DIVERGENCES.md)")

    return wrapper


def bug(test, stdlib):
    """``test`` expected to fail on tress (a copy: the base's function is
    left alone)."""
    if stdlib:
        return test

    @functools.wraps(test)
    def wrapper(self, *args, **kwargs):
        return test(self, *args, **kwargs)

    return unittest.expectedFailure(wrapper)


class ModuleView(types.ModuleType):
    """The module ``base``, except for the attributes given (set on the
    view; ``base`` is never touched)."""

    def __init__(self, base, **overrides):
        super().__init__(base.__name__, base.__doc__)
        self._ModuleView__base = base
        for name, value in overrides.items():
            setattr(self, name, value)

    def __getattr__(self, name):
        return getattr(self.__dict__["_ModuleView__base"], name)


def with_patches(test, *patches):
    """``test`` run with each ``(object, name, value)`` of ``patches``
    patched (``unittest.mock.patch.object``, undone after the test, in
    reverse order). Marked ``rebinds_multiprocessing`` for the harness tests
    that check every test naming ``multiprocessing.X`` runs so."""

    @functools.wraps(test)
    def wrapper(self, *args, **kwargs):
        with contextlib.ExitStack() as stack:
            for obj, name, value in patches:
                stack.enter_context(unittest.mock.patch.object(obj, name, value))
            return test(self, *args, **kwargs)

    wrapper.rebinds_multiprocessing = True
    return wrapper


def test_names(cls):
    return unittest.TestLoader().getTestCaseNames(cls)


def only(base, tests, **overrides):
    """``base`` with only ``tests`` left as tests (the others set to None, which
    unittest's loader, and so pytest, does not collect); ``overrides``
    replace some of them."""
    unknown = (set(tests) | set(overrides)) - set(test_names(base))
    assert not unknown, f"{base.__name__} has no {sorted(unknown)}"
    namespace = {name: None for name in test_names(base) if name not in tests}
    namespace.update(overrides)
    if issubclass(base, unittest.TestCase):
        namespace["__test__"] = False
    return type(f"_{base.__name__.lstrip('_')}", (base,), namespace)


def harness_threads():
    """pytest-timeout's per-test ``Timer`` threads: pytest keeps a reference to
    each, so they stay in ``threading._dangling``; they are not the tests'."""
    import threading

    return {
        t
        for t in threading._dangling
        if isinstance(t, threading.Timer) and t.name.startswith("pytest_timeout")
    }


class StartMethod:
    """Set the global start method for the class, as CPython's setUpModule
    does for its module; and fail (rather than warn) if BaseMixin found
    dangling processes or threads, as regrtest's ENV CHANGED would."""

    start_method = None

    @classmethod
    def setUpClass(cls):
        import multiprocessing

        cls._old_start_method = multiprocessing.get_start_method(allow_none=True)
        try:
            multiprocessing.set_start_method(cls.start_method, force=True)
        except ValueError:
            raise unittest.SkipTest(f"{cls.start_method} start method not supported")
        try:
            super().setUpClass()
        except BaseException:
            multiprocessing.set_start_method(cls._old_start_method, force=True)
            raise

    @classmethod
    def tearDownClass(cls):
        import multiprocessing

        from test import support

        if isinstance(getattr(cls, "dangling", None), tuple):  # BaseMixin's snapshot
            cls.dangling = (cls.dangling[0], set(cls.dangling[1]) | harness_threads())
        support.environment_altered = False
        try:
            super().tearDownClass()
        finally:
            multiprocessing.set_start_method(cls._old_start_method, force=True)
        if support.environment_altered:
            support.environment_altered = False
            raise AssertionError(
                f"{cls.__name__}: dangling processes or threads after the class "
                "(see the warning printed on stderr)"
            )


def install_bound_class(globs, name, bases, start_method):
    """Puts the test class ``name``, made of ``bases`` for ``start_method``,
    in the module namespace ``globs`` (collected by pytest: ``__test__``)."""
    namespace = {"start_method": start_method, "__module__": globs["__name__"], "__test__": True}
    cls = type(name, bases, namespace)
    cls.__qualname__ = name
    globs[name] = cls


def bound_classes(globs):
    """The test classes :func:`install_bound_class` put in ``globs``."""
    return [
        v
        for v in globs.values()
        if isinstance(v, type) and issubclass(v, unittest.TestCase) and v.__dict__.get("__test__")
    ]


def mp_module_fixtures(preload):
    """``(setUpModule, tearDownModule)`` for a binding module, as
    ``install_tests_in_module_dict``'s: the forkserver preloads the modules
    named in ``preload`` (the binding module, the target, CPython's module);
    dangling processes or threads after the module fail it; the forkserver
    (which has the binding module preloaded) is stopped at the end."""
    import multiprocessing
    import threading

    saved = {}

    def setUpModule():
        from multiprocessing import forkserver, process

        from test import _test_multiprocessing as mp

        saved["preload"] = forkserver._forkserver._preload_modules
        multiprocessing.set_forkserver_preload(list(preload))
        process._cleanup()
        saved["dangling"] = (process._dangling.copy(), threading._dangling.copy())
        mp.check_enough_semaphores()
        multiprocessing.util.get_temp_dir()  # creates the temp directory
        multiprocessing.get_logger().setLevel(mp.LOG_LEVEL)

    def tearDownModule():
        from multiprocessing import forkserver, process

        from test import support

        support.gc_collect()
        processes = set(process._dangling) - set(saved["dangling"][0])
        threads = set(threading._dangling) - set(saved["dangling"][1]) - harness_threads()
        forkserver._forkserver._stop()
        forkserver._forkserver._preload_modules = saved["preload"]
        assert not processes and not threads, (
            f"dangling processes {processes} / threads {threads} after the module"
        )

    return setUpModule, tearDownModule


def rewrite_child_import(code, line, new_line):
    """The child code with its one ``line`` replaced by ``new_line`` (a
    harness error if ``line`` does not occur exactly once)."""
    if code.count(line) != 1:
        raise AssertionError(
            f"harness: expected the child code to contain {line!r} exactly once:\n{code}"
        )
    return code.replace(line, new_line)


def main() -> int:
    t0 = time.monotonic()
    try:
        path, meta = fetch()
    except SuiteUnavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return 1
    print(path)
    print(f"  {meta['package']} {meta['version']} ({meta['deb']}), sha256 {meta['sha256']}")
    for line in meta.get("log", []):
        print(f"  {line}")
    print(f"  this call: {time.monotonic() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
