"""The CPU description every benchmark and parity report carries: model, cores and the ISA that matters."""

from __future__ import annotations

from pathlib import Path

from detector.hardware import cpu_info, cpu_line

BLOCK = "processor\t: {n}\nmodel name\t: {model}\ncpu family\t: {family}\nmodel\t\t: 1\nflags\t\t: {flags}\n\n"


def fake_cpuinfo(tmp_path: Path, model: str, family: int, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text("".join(BLOCK.format(n=n, model=model, family=family, flags=flags) for n in range(2)))
    return path


def test_avx2_without_vnni_is_named_as_such(tmp_path: Path) -> None:
    info = cpu_info(fake_cpuinfo(tmp_path, "AMD EPYC 7B13", 25, "fpu sse2 avx avx2 fma bmi2"))
    assert info["model"] == "AMD EPYC 7B13" and info["family_model"] == "25/1"
    assert info["isa"] == ["AVX2"] and info["vnni"] is False
    assert cpu_line(info).endswith("AVX2 (no VNNI)") and "25/1" in cpu_line(info)


def test_avx512_vnni_bf16_and_amx_are_listed(tmp_path: Path) -> None:
    flags = "avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8"
    info = cpu_info(fake_cpuinfo(tmp_path, "Intel Xeon", 6, flags))
    assert info["isa"] == ["AVX2", "AVX-512", "AVX-512 VNNI", "AVX-512 BF16", "AMX-INT8", "AMX-BF16"]
    assert info["vnni"] is True and "no VNNI" not in cpu_line(info)


def test_this_machine_is_described() -> None:
    info = cpu_info()
    assert info["cores"] >= 1 and isinstance(info["isa"], list) and cpu_line(info)
