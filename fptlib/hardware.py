"""What this machine computes natively: the CPU's name and instruction-set flags, and whether it (or the
GPU) has native bf16 arithmetic, which decides what precision `auto` means here."""
from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

# CPU flags that give native bf16 dot products (Linux /proc/cpuinfo names): AVX-512 BF16 (Zen 4+, Cooper
# Lake, Sapphire Rapids) and AMX's bf16 tiles (Sapphire Rapids+). Without them oneDNN converts bf16 to fp32
# for every product, and bf16 autocast is slower than fp32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; the platform's name and no flags elsewhere."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return (info.get("model name") or platform.processor() or platform.machine(),
            frozenset(info.get("flags", "").split()))


def cpu_bf16_flags() -> list[str]:
    return [f for f in BF16_FLAGS if f in cpu()[1]]


def native_bf16() -> bool:
    """Whether the device a run trains on multiplies bf16 natively: the GPU's answer where there is one
    (Ampere and later), else whether the CPU has one of BF16_FLAGS."""
    import torch
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return bool(cpu_bf16_flags())


def auto_precision() -> str:
    """What precision `auto` resolves to here: bf16 autocast where bf16 is native, else fp32."""
    return "bf16" if native_bf16() else "fp32"
