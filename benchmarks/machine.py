"""What the benchmarks say about the machine: CPU model and vector extensions, and the BLAS kernels in use.

Shared by benchmarks/epoch.py and benchmarks/conv.py. Those scripts take their own folder off
sys.path (benchmarks/profile.py would shadow the standard library's `profile`), so they load
this file by path (importlib.util.spec_from_file_location), not with `import machine`.

    cpu_model()        the "model name" of /proc/cpuinfo (platform.processor() elsewhere)
    cpu_flags()        the vector extensions /proc/cpuinfo lists (avx2, avx512f, amx_tile, ...)
    blas_info()        threadpoolctl's view of the loaded BLAS / OpenMP libraries, each with the
                       package that ships it, plus the BLAS compiled into torch (if torch is
                       already imported: MKL is linked statically into torch's wheels, so
                       threadpoolctl cannot see it; torch.__config__ names it)
    blas_text(info)    one line for a results header
"""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

# The extensions that decide which GEMM kernels a BLAS can pick, in the order they are printed.
FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU's model name (the first "model name" of /proc/cpuinfo), or what platform knows."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> list[str]:
    """Of FLAGS, those the first CPU of /proc/cpuinfo has (empty where there is no /proc/cpuinfo)."""
    for line in _cpuinfo():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in FLAGS if f in have]
    return []


def _owner(filepath: str | None) -> str:
    """The package a shared library comes with, from its path (numpy.libs/... -> numpy, torch/lib/... -> torch)."""
    parts = Path(filepath or "").parts
    for part in reversed(parts[:-1]):
        name = part.removesuffix(".libs")
        if name in ("numpy", "scipy", "torch", "sklearn", "scikit_learn"):
            return {"sklearn": "scikit-learn", "scikit_learn": "scikit-learn"}.get(name, name)
    return Path(filepath).name if filepath else "?"


def torch_blas() -> dict | None:
    """The BLAS and kernels compiled into torch, if torch is imported (not imported here: that is the caller's choice)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        show = torch.__config__.show()
    except Exception:  # noqa: BLE001 - informational only
        return None
    info = {"package": "torch", "torch": torch.__version__}
    match = re.search(r"BLAS_INFO=(\w+)", show)
    info["blas_info"] = match.group(1) if match else None
    match = re.search(r"Math Kernel Library Version ([\d.]+)", show)
    info["mkl"] = match.group(1) if match else None
    match = re.search(r"MKL-DNN (v[\d.]+)", show)
    info["onednn"] = match.group(1) if match else None
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        info["cpu_capability"] = None
    info["num_threads"] = torch.get_num_threads()
    return info


def blas_info() -> list[dict] | str:
    """threadpoolctl's libraries (internal_api, version, architecture, threads, package), then torch's own BLAS."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    out = [
        {
            k: p.get(k)
            for k in ("user_api", "internal_api", "version", "architecture", "threading_layer", "num_threads", "prefix")
        }
        | {"package": _owner(p.get("filepath"))}
        for p in threadpool_info()
    ]
    torch = torch_blas()
    if torch is not None:
        out.append({"user_api": "torch", "internal_api": torch["blas_info"], **torch})
    return out


def blas_text(blas) -> str:
    """One line: per package, its BLAS (kernel architecture, threads) and OpenMP runtime."""
    if not isinstance(blas, list):
        return str(blas)
    by_package: dict[str, list[str]] = {}
    for p in blas:
        if p.get("user_api") == "torch":
            blas = " ".join(v for v in (p.get("blas_info") or "?", p.get("mkl")) if v)
            text = f"{blas} (linked into torch)"
            if p.get("onednn"):
                text += f", oneDNN {p['onednn']}"
            if p.get("cpu_capability"):
                text += f", CPU capability {p['cpu_capability']}"
            text += f", x{p['num_threads']}"
        elif p.get("user_api") == "blas":
            kernel = " ".join(str(v) for v in (p.get("version"), p.get("architecture")) if v)
            layer = f", {p['threading_layer']}" if p.get("threading_layer") else ""
            text = f"{p.get('internal_api')} {kernel} kernel{layer}, x{p.get('num_threads')}"
        else:
            text = f"{p.get('internal_api')} {p.get('prefix') or ''} x{p.get('num_threads')}".replace("  ", " ")
        by_package.setdefault(p.get("package", "?"), []).append(text)
    return "; ".join(f"{pkg}: " + ", ".join(texts) for pkg, texts in by_package.items())


def cpu_text() -> str:
    flags = cpu_flags()
    return cpu_model() + (f" ({' '.join(flags)})" if flags else "")
