#!/usr/bin/env python3
"""Print the median of every criterion benchmark under target/criterion.

criterion's `time:` line is the mean; BENCHMARKS.md quotes medians, read from
each benchmark's new/estimates.json. Usage: python3 tools/bench/criterion_medians.py
"""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parents[2] / "target" / "criterion"
for path in sorted(root.glob("**/new/estimates.json")):
    median = json.loads(path.read_text())["median"]["point_estimate"]
    for unit, div in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1)):
        if median >= div or unit == "ns":
            break
    name = str(path.parent.parent.relative_to(root))
    print(f"{median / div:10.3f} {unit:2}  {name}")
