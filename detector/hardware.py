"""The CPU a figure came from: model name and the instruction sets that change int8 and bf16 results.

int8 speed and even int8 accuracy depend on the CPU (u8×s8 kernels saturate without VNNI; bf16 is
emulated without AVX-512 BF16 or AMX), so every benchmark, parity report and worker log names it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# /proc/cpuinfo flag -> the name used in reports, in the order they are listed
ISA_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
             "avx512_bf16": "AVX-512 BF16", "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16"}


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    """Model name, core count and the int8/bf16-relevant ISA extensions of this machine."""
    fields: dict[str, str] = {}
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if not line.strip() and fields:
                break  # the first processor's block names them all
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "family_model": f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}",  # AMD 25: Zen 3/4, 26: Zen 5
            "cores": os.cpu_count() or 1,
            "isa": [name for flag, name in ISA_FLAGS.items() if flag in flags],
            "vnni": bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})}


def cpu_line(info: dict[str, object] | None = None) -> str:
    """One line for a report header, e.g. ``AMD EPYC (family/model 25/1), 2 cores, AVX2 (no VNNI)``."""
    info = info or cpu_info()
    isa = ", ".join(info["isa"]) or "no AVX2"
    return (f"{info['model']} (family/model {info['family_model']}), {info['cores']} cores, "
            f"{isa}{'' if info['vnni'] else ' (no VNNI)'}")
