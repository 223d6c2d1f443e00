"""The fetch helper for CPython's test files (``cpython_suite.py``), offline.

Synthetic ``.deb`` archives exercise the pure-Python extraction (xz, gzip),
the zstd fallbacks (``dpkg-deb``, then ``zstd``), the verification of the
package and of the file, and the cache; no network and no apt.
"""

import io
import json
import shutil
import subprocess
import tarfile

import cpython_suite as cs
import pytest

GOOD_SOURCE = ("\n".join(cs.REQUIRED_MARKERS) + "\n").encode()


def _tar(files, mode):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar(members):
    out = [b"!<arch>\n"]
    for name, data in members:
        header = (
            name.encode().ljust(16)
            + b"0".ljust(12)
            + b"0".ljust(6)
            + b"0".ljust(6)
            + b"100644".ljust(8)
            + str(len(data)).encode().ljust(10)
            + b"`\n"
        )
        out += [header, data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def make_deb(
    path,
    *,
    compression="xz",
    package=cs.PACKAGE,
    version="3.11.2-6+deb12u7",
    files=None,
):
    if files is None:
        files = {"./" + cs.MEMBER: GOOD_SOURCE}
    control = f"Package: {package}\nVersion: {version}\nArchitecture: all\n".encode()
    control_tar = _tar({"./control": control}, "w")
    data_tar = _tar(files, "w")
    if compression in ("xz", "gz", "bz2"):
        control_tar = _tar({"./control": control}, f"w:{compression}")
        data_tar = _tar(files, f"w:{compression}")
    elif compression == "zst":
        zstd = shutil.which("zstd")
        if zstd is None:
            pytest.skip("zstd is not installed: cannot build a zstd-compressed .deb")
        control_tar = subprocess.run(
            [zstd, "-q", "-c"], input=control_tar, capture_output=True, check=True, timeout=60
        ).stdout
        data_tar = subprocess.run(
            [zstd, "-q", "-c"], input=data_tar, capture_output=True, check=True, timeout=60
        ).stdout
    suffix = "" if compression == "none" else f".{compression}"
    path.write_bytes(
        _ar(
            [
                ("debian-binary", b"2.0\n"),
                (f"control.tar{suffix}", control_tar),
                (f"data.tar{suffix}", data_tar),
            ]
        )
    )
    return path


@pytest.mark.parametrize("compression", ["xz", "gz", "bz2", "none"])
def test_extract_pure_python(tmp_path, compression, monkeypatch):
    # No tool may be used for these compressions.
    monkeypatch.setattr(cs.shutil, "which", lambda name: None)
    deb = make_deb(tmp_path / "p.deb", compression=compression)
    data, control = cs.extract_from_deb(deb)
    assert data == GOOD_SOURCE
    assert control["Package"] == cs.PACKAGE
    assert control["Version"] == "3.11.2-6+deb12u7"


def test_extract_zstd_with_dpkg_deb(tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    deb = make_deb(tmp_path / "p.deb", compression="zst")
    assert cs.extract_from_deb(deb)[0] == GOOD_SOURCE


def test_extract_zstd_with_zstd_tool(tmp_path, monkeypatch):
    deb = make_deb(tmp_path / "p.deb", compression="zst")
    real_which = shutil.which
    monkeypatch.setattr(
        cs.shutil, "which", lambda name: None if name == "dpkg-deb" else real_which(name)
    )
    assert cs.extract_from_deb(deb)[0] == GOOD_SOURCE


def test_extract_zstd_without_tools(tmp_path, monkeypatch):
    deb = make_deb(tmp_path / "p.deb", compression="zst")
    monkeypatch.setattr(cs.shutil, "which", lambda name: None)
    with pytest.raises(cs.SuiteUnavailable, match="zstd-compressed.*install dpkg or zstd"):
        cs.extract_from_deb(deb)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"package": "libpython3.12-testsuite"}, "is package 'libpython3.12-testsuite'"),
        ({"version": "3.11.0~rc1-1~22.04"}, "not a released CPython 3.11"),
        ({"version": "3.12.1-1"}, "not a released CPython 3.11"),
        ({"files": {"./usr/lib/python3.11/test/test_queue.py": b""}}, "has no usr/lib"),
        (
            {"files": {"./" + cs.SPLIT_MEMBER: b"", "./usr/lib/python3.11/test/x.py": b""}},
            "as a package",
        ),
    ],
)
def test_extract_rejects(tmp_path, kwargs, message):
    deb = make_deb(tmp_path / "p.deb", **kwargs)
    with pytest.raises(cs.SuiteUnavailable, match=message):
        cs.extract_from_deb(deb)


def test_not_a_deb(tmp_path):
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(cs.SuiteUnavailable, match="ar magic"):
        cs.extract_from_deb(bad)
    bad.write_bytes(_ar([("debian-binary", b"2.0\n")])[:-3])
    with pytest.raises(cs.SuiteUnavailable, match="truncated"):
        cs.extract_from_deb(bad)


def test_verify_source():
    cs.verify_source(GOOD_SOURCE, "x")
    with pytest.raises(cs.SuiteUnavailable, match="ThreadPoolMixin"):
        cs.verify_source(b"class FutureTests(BaseTestCase):\n", "x")


def test_fetch_downloads_once_then_uses_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRESS_CPYTHON_TESTS_CACHE", str(cache))
    calls = []

    def fake_download(scratch):
        calls.append(scratch)
        assert scratch.parent == cache  # a scratch directory inside the cache
        return make_deb(scratch / f"{cs.PACKAGE}_3.11.2-6+deb12u7_all.deb"), ["fake"]

    monkeypatch.setattr(cs, "download_deb", fake_download)
    path, meta = cs.fetch()
    assert path == cache / cs.FILENAME
    assert path.read_bytes() == GOOD_SOURCE
    assert meta["version"] == "3.11.2-6+deb12u7"
    assert sorted(p.name for p in cache.iterdir()) == [cs.FILENAME, cs.FILENAME + ".source.json"]

    assert cs.fetch() == (path, meta)
    assert len(calls) == 1  # the cached copy was reused

    # A cached file that no longer matches its recorded hash is fetched again.
    path.write_bytes(GOOD_SOURCE + b"# edited\n")
    assert cs.fetch()[0].read_bytes() == GOOD_SOURCE
    assert len(calls) == 2
    assert json.loads((cache / (cs.FILENAME + ".source.json")).read_text())["sha256"] == (
        cs._sha256(GOOD_SOURCE)
    )


def test_fetch_failure_leaves_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRESS_CPYTHON_TESTS_CACHE", str(cache))

    def failing_download(scratch):
        raise cs.SuiteUnavailable("no network")

    monkeypatch.setattr(cs, "download_deb", failing_download)
    with pytest.raises(cs.SuiteUnavailable, match="no network"):
        cs.fetch()
    assert list(cache.iterdir()) == []


def test_download_without_apt_get(tmp_path, monkeypatch):
    monkeypatch.setattr(cs.shutil, "which", lambda name: None)
    with pytest.raises(cs.SuiteUnavailable, match="apt-get is not installed"):
        cs.download_deb(tmp_path)


def test_cache_inside_the_repository_is_refused(monkeypatch):
    monkeypatch.setenv("TRESS_CPYTHON_TESTS_CACHE", str(cs.REPO_ROOT / "tests" / "cache"))
    with pytest.raises(cs.SuiteUnavailable, match="inside the repository"):
        cs.cache_dir()
    assert not (cs.REPO_ROOT / "tests" / "cache").exists()


# --- the suite as one namespace (SuiteView, rebind) and where it comes from ----


def _module(name, **globs):
    import types

    module = types.ModuleType(name)
    vars(module).update(globs)
    return module


def test_suite_view_looks_names_up_in_module_order():
    import unittest

    class Case(unittest.TestCase):
        pass

    first = _module("pkg.util", shared="util's", only_util=1, Case=Case)
    second = _module("pkg.test_x", shared="test_x's", only_x=2, Case=Case)
    view = cs.SuiteView("pkg", [first, second], layout="package", path=None, provenance={})
    assert (view.shared, view.only_util, view.only_x) == ("util's", 1, 2)
    assert view.modules == (first, second)
    assert view.modules_with("shared") == [first, second]
    assert view.modules_with("only_x") == [second]
    assert view.test_classes() == {"Case": Case}
    with pytest.raises(AttributeError, match="no module of pkg has a global 'missing'"):
        view.missing  # noqa: B018
    with pytest.raises(AttributeError, match="rebind"):
        view.shared = "x"
    assert first.shared == "util's"

    # Two different classes under one name are a harness error.
    class Other(unittest.TestCase):
        pass

    second.Case = Other
    with pytest.raises(AssertionError, match="two classes named Case"):
        view.test_classes()


def test_rebind_sets_every_module_that_has_the_name_and_undoes():
    first = _module("pkg.util", futures="stdlib", Future="F")
    second = _module("pkg.test_x", futures="stdlib")
    third = _module("pkg.test_y")
    view = cs.SuiteView("pkg", [first, second, third], layout="package", path=None, provenance={})
    undo = cs.rebind(view, "futures", "view")
    assert (first.futures, second.futures) == ("view", "view")
    assert "futures" not in vars(third)  # a module without the global does not get it
    undo()
    assert (first.futures, second.futures) == ("stdlib", "stdlib")
    with pytest.raises(AssertionError, match="no module of pkg has a global 'nothing'"):
        cs.rebind(view, "nothing", 1)


def test_import_package(monkeypatch):
    import unittest

    def raising(exc):
        def import_module(name):
            assert name == cs.PACKAGE_MODULE
            raise exc

        return import_module

    monkeypatch.setattr(
        cs.importlib, "import_module", raising(ModuleNotFoundError("no", name=cs.PACKAGE_MODULE))
    )
    assert cs.import_package() is None  # not shipped: the caller falls back
    monkeypatch.setattr(
        cs.importlib, "import_module", raising(ModuleNotFoundError("no", name="_testcapi"))
    )
    with pytest.raises(cs.SuiteUnavailable, match="does not import: ModuleNotFoundError"):
        cs.import_package()  # shipped but broken: no fallback
    monkeypatch.setattr(cs.importlib, "import_module", raising(unittest.SkipTest("ASAN")))
    with pytest.raises(cs.SuiteUnavailable, match="skips itself here: ASAN"):
        cs.import_package()


def test_unavailable_reason():
    assert cs.unavailable_reason("3.12.1") == (
        "this interpreter (3.12.1) does not ship test.test_concurrent_futures and only "
        "CPython 3.11's file can be fetched (Debian's libpython3.11-testsuite)"
    )


def test_without_the_package_only_3_11_fetches(monkeypatch):
    import platform
    import sys

    monkeypatch.setattr(cs, "import_package", lambda: None)
    fake = _module(cs.MODULE_NAME)
    monkeypatch.setattr(cs, "load_file", lambda: (fake, cs.REPO_ROOT / "x.py", {"v": 1}))
    if sys.version_info[:2] == (3, 11):
        tcf = cs.load_test_concurrent_futures()
        assert (tcf.layout, tcf.modules, tcf.__name__) == ("file", (fake,), cs.MODULE_NAME)
        assert tcf.provenance == {"v": 1}
    else:
        with pytest.raises(cs.SuiteUnavailable) as info:
            cs.load_test_concurrent_futures()
        assert str(info.value) == cs.unavailable_reason(platform.python_version())


def test_the_interpreters_package_is_used_when_it_ships_one():
    import importlib.util
    import sys

    try:
        shipped = importlib.util.find_spec(cs.PACKAGE_MODULE) is not None
    except ImportError:  # no `test` package at all
        shipped = False
    if not shipped:
        pytest.skip(f"{sys.version.split()[0]} does not ship {cs.PACKAGE_MODULE}")
    tcf = cs.load_test_concurrent_futures()
    assert tcf.layout == "package"
    assert tcf.__name__ == cs.PACKAGE_MODULE
    names = [m.__name__ for m in tcf.modules]
    assert names[:2] == [f"{cs.PACKAGE_MODULE}.util", f"{cs.PACKAGE_MODULE}.executor"]
    assert all(sys.modules[name] is m for name, m in zip(names, tcf.modules))
    assert f"{cs.PACKAGE_MODULE}.test_thread_pool" in names
    assert tcf.ThreadPoolMixin.__module__ == f"{cs.PACKAGE_MODULE}.util"
    assert tcf.FutureTests.__module__ == f"{cs.PACKAGE_MODULE}.test_future"
    # No alias for the child interpreters: they import the real package.
    assert cs.child_prelude("concurrent.futures") == cs.target_path_prelude("concurrent.futures")
