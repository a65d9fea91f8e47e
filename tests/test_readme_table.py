"""The benchmark tables of docs/performance.md are what benchmarks/readme_table.py makes of the committed run, unedited."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import readme_table  # noqa: E402


def test_the_readme_block_is_the_scripts_output_of_the_committed_results():
    with open(os.path.join(ROOT, "benchmarks", "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(ROOT, "docs", "performance.md")) as f:
        readme = f.read()
    block = readme.partition(readme_table.START)[2].partition(readme_table.END)[0]
    assert block.strip() == readme_table.markdown(results).strip()
    assert results["machine"]["extensions"] is True  # a run of the compiled kernels
    keys = [entry["key"] for entry in results["scenarios"]]
    assert "redis-modify" in keys and "django-request" in keys and "flask-request" in keys
