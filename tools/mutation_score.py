"""Kill rate per module from mutmut's results (``mutmut results --all true``)."""

import collections
import re
import subprocess

out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
counts = collections.defaultdict(collections.Counter)
for line in out.splitlines():
    match = re.match(r"\s*([\w.]+)\.x[_ǁ]\S*__mutmut_\d+: (\w[\w ]*)", line)
    if match:
        module, status = match.groups()
        counts[module][status.strip()] += 1
for module, seen in sorted(counts.items()):
    total = sum(seen.values())
    killed = seen["killed"] + seen["timeout"]
    print(f"{module:40s} {killed:5d} / {total:5d} killed  {100 * killed / total:5.1f} %   {dict(seen)}")
