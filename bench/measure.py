#!/usr/bin/env python3
"""Runs one command, prints wall time, throughput over BYTES and the child's peak RSS.

usage: measure.py LABEL BYTES -- CMD...   (CMD runs through bash -c when it is one string)
"""
import resource
import subprocess
import sys
import time

label, nbytes = sys.argv[1], int(sys.argv[2])
cmd = sys.argv[sys.argv.index("--") + 1:]
start = time.monotonic()
proc = subprocess.run(cmd if len(cmd) > 1 else ["bash", "-c", cmd[0]], stdout=subprocess.DEVNULL)
elapsed = time.monotonic() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
rate = nbytes / elapsed / 1e6 if nbytes and elapsed > 0 else 0.0
status = "" if proc.returncode == 0 else f"  (exit {proc.returncode})"
rate_txt = f"{rate:9.0f} MB/s" if nbytes else " " * 14
print(f"{label:<44} {elapsed:9.3f} s {rate_txt} {peak_kib / 1024:9.1f} MiB peak{status}", flush=True)
sys.exit(proc.returncode)
