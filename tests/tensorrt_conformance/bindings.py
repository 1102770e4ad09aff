"""The real TensorRT Python bindings of one release, importable on a machine without TensorRT.

For a release of the matrix: `pip download --no-deps` its bindings wheel into the cache, unpack
it into a folder of its own (the package renamed `tensorrt`, as the `tensorrt` meta-package
installs it), list the dynamic symbols its `tensorrt.so` takes from NVIDIA's libraries (`nm -D
--undefined-only`, less what the C and C++ runtimes and Python define), and build one stub shared
library per NVIDIA soname it needs (`readelf -d`), each symbol a function returning null, with the
system C compiler. The real module then imports in a subprocess whose LD_LIBRARY_PATH points at
the stubs: every class, enum, method, property and pybind11 signature of that release is there,
`trt.Logger` works, and whatever needs a factory (`trt.Builder(logger)`) raises pybind11's
TypeError "factory function returned nullptr".

The cache (default build/tensorrt-conformance/ in the checkout, or $AT2SELD_TRT_CONFORMANCE_CACHE)
keeps wheels, unpacked bindings and stubs between runs; a lock per release lets pytest-xdist
workers share it. `python -m tests.tensorrt_conformance.bindings` prepares every release and
rewrites the committed surfaces (surfaces/<version>.json) from the real modules.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.tensorrt_conformance.matrix import MATRIX, Release

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SURFACES = HERE / "surfaces"
CACHE_ENV = "AT2SELD_TRT_CONFORMANCE_CACHE"
# Which NVIDIA library each symbol comes from (the rest: libnvinfer). The dynamic linker finds a
# symbol in any loaded library, so this is for a faithful layout, not for the import to work.
OWNERS = (("NvOnnxParser", "libnvonnxparser"), ("nvuffparser", "libnvparsers"), ("nvcaffeparser", "libnvparsers"),
          ("initLibNvInferPlugins", "libnvinfer_plugin"))
SYSTEM_LIBRARIES = ("libstdc++.so.6", "libgcc_s.so.1", "libm.so.6", "libc.so.6")
IMPORT_CHECK = """
import json, sys
import tensorrt as trt
out = {"version": trt.__version__, "file": trt.__file__}
logger = trt.Logger(trt.Logger.WARNING)
out["logger"] = type(logger).__name__
try:
    trt.Builder(logger)
    out["builder"] = "constructed"
except TypeError as e:
    out["builder"] = "TypeError: " + str(e)
sys.path.insert(0, sys.argv[2])
import surface_dump
with open(sys.argv[1], "w") as f:
    f.write(surface_dump.dumps(surface_dump.surface(trt)))
print("IMPORT=" + json.dumps(out))
"""


class HarnessUnavailable(RuntimeError):
    """A release could not be prepared here (no network for the wheel, no C compiler, no nm)."""


@dataclass
class Prepared:
    """One release's real bindings, ready to import: where they are and what it took."""

    release: Release
    wheel: Path
    site: Path  # on PYTHONPATH: holds the `tensorrt` package
    stubs: Path  # on LD_LIBRARY_PATH: the stub libraries
    symbols: dict[str, list[str]] = field(default_factory=dict)  # soname -> the symbols stubbed in it
    seconds: dict[str, float] = field(default_factory=dict)  # step -> seconds, this run (0: cached)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
        return env | {"PYTHONPATH": str(self.site), "LD_LIBRARY_PATH": str(self.stubs), "PYTHONNOUSERSITE": "1"}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or ROOT / "build" / "tensorrt-conformance")


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, timeout: float = 300, **kw) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HarnessUnavailable(f"{what}: {type(e).__name__}: {e}") from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise HarnessUnavailable(f"{what}: exit {r.returncode}: {last}")
    return r.stdout


def fetch_wheel(release: Release, wheels: Path) -> Path:
    """The release's bindings wheel for this interpreter, downloaded once into `wheels`."""
    found = sorted(wheels.glob(release.wheel_prefix + "*.whl")) if wheels.is_dir() else []
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "--dest", tmp,
              release.requirement], f"pip download {release.requirement}")
        got = sorted(Path(tmp).glob(release.wheel_prefix + "*.whl"))
        if not got:
            raise HarnessUnavailable(f"pip download {release.requirement}: no {release.wheel_prefix}*.whl came")
        return Path(shutil.move(str(got[0]), wheels / got[0].name))


def unpack(wheel: Path, site: Path) -> None:
    """The wheel's `tensorrt_bindings` package as `tensorrt` in `site` (written whole, then renamed)."""
    tmp = Path(tempfile.mkdtemp(dir=site.parent, prefix=".site-"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp)
    (tmp / "tensorrt_bindings").rename(tmp / "tensorrt")
    tmp.rename(site)


def undefined_symbols(library: Path) -> list[str]:
    """The strong, unversioned undefined dynamic symbols (`nm -D --undefined-only`): what the
    library takes from others by plain name (versioned ones are glibc's and libstdc++'s)."""
    out = _run(["nm", "-D", "--undefined-only", str(library)], f"nm -D {library.name}")
    return sorted({parts[1] for parts in (line.split() for line in out.splitlines())
                   if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1]})


def needed_sonames(library: Path) -> list[str]:
    out = _run(["readelf", "-d", str(library)], f"readelf -d {library.name}")
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _defined_here(symbol: str) -> bool:
    """Whether the C/C++ runtimes or the interpreter already define the symbol (e.g. dlopen)."""
    libs = [ctypes.CDLL(None), ctypes.pythonapi]
    for name in SYSTEM_LIBRARIES:
        try:
            libs.append(ctypes.CDLL(name))
        except OSError:
            continue
    return any(hasattr(lib, symbol) for lib in libs)


def stub_plan(library: Path) -> dict[str, list[str]]:
    """soname -> the symbols its stub defines, for each NVIDIA library `library` needs."""
    sonames = [s for s in needed_sonames(library) if s.startswith("libnv")]
    if not sonames:
        raise HarnessUnavailable(f"{library}: needs no NVIDIA library (readelf found none)")
    plan: dict[str, list[str]] = {s: [] for s in sonames}
    default = next(s for s in sonames if s.startswith("libnvinfer.so"))
    for symbol in undefined_symbols(library):
        if _defined_here(symbol):
            continue
        owner = next((lib for key, lib in OWNERS if key in symbol), "libnvinfer")
        soname = next((s for s in sonames if s.split(".so")[0] == owner), default)
        plan[soname].append(symbol)
    return plan


def stub_source(soname: str, symbols: list[str]) -> str:
    """C source of a stub library: each symbol a function returning null. C++ factories (8.6's
    nvuffparser/nvcaffeparser) are defined by their mangled names, which are C identifiers."""
    lines = [f"/* Stub of {soname} for the TensorRT conformance harness: every factory returns null. */"]
    lines += [f"void *{s}(void) {{ return (void *)0; }}" for s in symbols]
    return "\n".join(lines) + "\n"


def build_stubs(plan: dict[str, list[str]], stubs: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=stubs.parent, prefix=".stubs-"))
    cc = os.environ.get("CC", "cc")
    for soname, symbols in plan.items():
        src = tmp / f"{soname}.c"
        src.write_text(stub_source(soname, symbols))
        _run([cc, "-shared", "-fPIC", "-O1", f"-Wl,-soname,{soname}", "-o", str(tmp / soname), str(src)],
             f"{cc} {src.name}")
    tmp.rename(stubs)


def prepare(release: Release) -> Prepared:
    """The release's bindings unpacked and its stubs built, in the cache (reused when there)."""
    root = cache_root()
    folder = root / release.version
    with _locked(root / f"{release.version}.lock"):
        seconds = {}
        t0 = time.perf_counter()
        wheel = fetch_wheel(release, root / "wheels")
        seconds["download"] = time.perf_counter() - t0
        site, stubs = folder / "site", folder / "stubs"
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if not (site / "tensorrt" / "tensorrt.so").is_file():
            shutil.rmtree(site, ignore_errors=True)
            unpack(wheel, site)
        seconds["unpack"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan = stub_plan(site / "tensorrt" / "tensorrt.so")
        if not all((stubs / soname).is_file() for soname in plan):
            shutil.rmtree(stubs, ignore_errors=True)
            build_stubs(plan, stubs)
        seconds["stubs"] = time.perf_counter() - t0
    return Prepared(release, wheel, site, stubs, plan, seconds)


def import_real(prepared: Prepared, surface_out: Path) -> dict:
    """Import the real module in a subprocess on the stubs: what it reports (version, Logger,
    the Builder's error) and its surface written to `surface_out`."""
    t0 = time.perf_counter()
    out = _run([sys.executable, "-c", IMPORT_CHECK, str(surface_out), str(HERE)],
               f"import tensorrt {prepared.release.version}", timeout=120, env=prepared.env(), cwd=surface_out.parent)
    prepared.seconds["import"] = time.perf_counter() - t0
    line = next((x for x in out.splitlines() if x.startswith("IMPORT=")), None)
    if line is None:
        raise HarnessUnavailable(f"import tensorrt {prepared.release.version}: no report ({out[-200:]!r})")
    return json.loads(line.removeprefix("IMPORT="))


def write_surfaces() -> None:
    """Prepare every release and rewrite surfaces/<version>.json from its real module."""
    SURFACES.mkdir(exist_ok=True)
    for release in MATRIX:
        prepared = prepare(release)
        report = import_real(prepared, SURFACES / f"{release.version}.json")
        size = prepared.wheel.stat().st_size / 1e6
        print(f"{release.version:>11}  {prepared.wheel.name}  {size:.2f} MB  {report['builder']}  "
              + "  ".join(f"{k} {v:.2f}s" for k, v in prepared.seconds.items()))


if __name__ == "__main__":
    write_surfaces()
