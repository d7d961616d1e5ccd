#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""What one 1500-byte copy costs with each x86-64 copy instruction sequence, on the CPU this runs on.

Run it in a guest (``python -m tests.vmharness run --kernel 6.1 -- 'cd /work/main && .venv/bin/python
bench/bench_copy.py'``) to see why the harness turns ERMS off: under TCG ``rep movsb``, which a kernel uses for
memcpy and copy_to/from_user when the CPU advertises ERMS, runs one byte per step. Needs gcc; prints figures and
asserts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LENGTH 1504
#define ROUNDS 100000
static char source[LENGTH], target[LENGTH];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void rep_movsb(void *to, const void *from, size_t n)
{
    asm volatile("rep movsb" : "+D"(to), "+S"(from), "+c"(n) : : "memory");
}

static void rep_movsq(void *to, const void *from, size_t n)
{
    n /= 8;
    asm volatile("rep movsq" : "+D"(to), "+S"(from), "+c"(n) : : "memory");
}

static void libc_memcpy(void *to, const void *from, size_t n)
{
    memcpy(to, from, n);
    asm volatile("" : : "r"(to) : "memory");
}

static void measure(const char *name, void (*copy)(void *, const void *, size_t))
{
    double start = now();
    for (int round = 0; round < ROUNDS; round++)
        copy(target, source, LENGTH);
    printf("%-12s %6.2f us per %d bytes\n", name, (now() - start) / ROUNDS * 1e6, LENGTH);
}

int main(void)
{
    measure("rep movsb", rep_movsb);
    measure("rep movsq", rep_movsq);
    measure("libc memcpy", libc_memcpy);
    return 0;
}
"""


def main() -> int:
    with open("/proc/cpuinfo", encoding="ascii") as handle:
        flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    sys.stdout.write(f"CPU advertises ERMS: {'yes' if 'erms' in flags else 'no'}\n")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as directory:
        source, program = os.path.join(directory, "copy.c"), os.path.join(directory, "copy")
        with open(source, "w", encoding="ascii") as handle:
            handle.write(PROGRAM)
        subprocess.run(["gcc", "-O2", "-o", program, source], check=True)
        sys.stdout.flush()
        return subprocess.run([program], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
