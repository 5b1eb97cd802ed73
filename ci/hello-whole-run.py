#!/usr/bin/env python3
"""Times the whole QEMU run of `hello` on microvm for two kernels, alternating, and
prints medians and the ratio, as JSON. QEMU must be on PATH.

Usage: ci/hello-whole-run.py AFTER_ELF BEFORE_ELF CORES REPEATS
(e.g. this tree's target/x86_64-unknown-none/release/manada against an older build)."""
import statistics, subprocess, sys, time, json
after, before, cores, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def cmd(kernel):
    return ["qemu-system-x86_64", "-machine", "microvm,acpi=on", "-smp", str(cores), "-m", "512M",
            "-accel", "tcg,thread=multi", "-kernel", kernel, "-append", "app=hello",
            "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot", "-nodefaults",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-global", "virtio-mmio.force-legacy=false"]
times = {"after": [], "before": []}
for i in range(repeats):
    for name, kernel in (("after", after), ("before", before)) if i % 2 == 0 else (("before", before), ("after", after)):
        start = time.perf_counter()
        run = subprocess.run(cmd(kernel), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        elapsed = time.perf_counter() - start
        if run.returncode != 33:
            sys.exit(f"{name} exited {run.returncode}: {run.stdout[-400:]!r}")
        times[name].append(elapsed)
a, b = statistics.median(times["after"]), statistics.median(times["before"])
print(json.dumps({"cores": cores, "repeats": repeats, "after_median_s": round(a, 4),
                  "before_median_s": round(b, 4), "ratio_after_over_before": round(a / b, 3)}))
