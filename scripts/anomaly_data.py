#!/usr/bin/env python3
"""Fetches the labelled anomaly and change-point data sets that ship inside PyPI wheels
(river 0.26.1: Shuttle and the Turing Change Point Dataset series; aeon 1.6.0: UCR/KDD-TSAD 135)
and writes them as plain CSV/JSON files for Weir's accuracy tests and benchmark.

Usage: anomaly_data.py [DIR]   (default: $WEIR_ANOMALY_DATA or ~/.cache/weir-anomaly-data)

Output, in DIR:
  shuttle.csv                    f1..f9,anomaly (49,097 rows)
  ucr135.csv                     value,is_anomaly (7,501 points; the first 1,200 are the normal prefix)
  tcpd/<series>.csv              value (the series' first channel)
  tcpd/<series>.json             {"annotator": [change point indices, ...], ...}
Only `pip download --no-deps` is used: nothing is installed.
"""
import ast
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

WHEELS = ["river==0.26.1", "aeon==1.6.0"]
TCPD = ["airline_passengers", "apple", "bitcoin", "brent_crude_oil", "occupancy", "run_log", "uk_coal_employment"]


def annotations(source: str) -> dict:
    """The `annotations={...}` argument of the data set's constructor."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "annotations":
            return ast.literal_eval(node.value)
    raise ValueError("no annotations")


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "WEIR_ANOMALY_DATA", os.path.expanduser("~/.cache/weir-anomaly-data"))
    if os.path.exists(os.path.join(out, "complete")):
        return
    os.makedirs(os.path.join(out, "tcpd"), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "-d", tmp, *WHEELS], check=True)
        wheels = {name.split("-")[0]: zipfile.ZipFile(os.path.join(tmp, name)) for name in os.listdir(tmp)}
        river, aeon = wheels["river"], wheels["aeon"]

        with gzip.open(river.open("river/datasets/shuttle.csv.gz"), "rt") as src, \
                open(os.path.join(out, "shuttle.csv"), "w") as dst:
            dst.write(src.read())

        base = "aeon/datasets/data/KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv"
        with io.TextIOWrapper(aeon.open(base)) as src, open(os.path.join(out, "ucr135.csv"), "w") as dst:
            writer = csv.writer(dst)
            writer.writerow(["value", "is_anomaly"])
            for row in csv.DictReader(src):
                writer.writerow([row["value"], row["is_anomaly"]])

        for name in TCPD:
            source = river.read(f"river/drift/datasets/{name}.py").decode()
            with open(os.path.join(out, "tcpd", f"{name}.json"), "w") as dst:
                json.dump(annotations(source), dst)
            with io.TextIOWrapper(river.open(f"river/drift/datasets/{name}.csv")) as src, \
                    open(os.path.join(out, "tcpd", f"{name}.csv"), "w") as dst:
                reader = csv.reader(src)
                next(reader)
                dst.write("value\n")
                for row in reader:
                    dst.write(f"{float(row[1])}\n")
    open(os.path.join(out, "complete"), "w").close()


if __name__ == "__main__":
    main()
