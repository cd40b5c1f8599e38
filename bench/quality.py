#!/usr/bin/env python3
"""Validation bits per character of rnn, gru and lstm on the bundled names, each on the same
seeded splits (seeds 1-4), as the README's "Models" table reports them:

    /usr/bin/python3 bench/quality.py [--seeds 1,2,3,4] [--threads 1]

Rows: the default recipe (one rnn layer, 10 epochs) and `--preset quality` with each cell.
Needs the .NET SDK; builds the CLI once.
"""
import argparse, json, os, statistics, subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = [
    ("rnn, default recipe", []),
    ("rnn, --preset quality --cell rnn", ["--preset", "quality", "--cell", "rnn"]),
    ("gru, --preset quality", ["--preset", "quality"]),
    ("lstm, --preset quality --cell lstm", ["--preset", "quality", "--cell", "lstm"]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1,2,3,4")
    ap.add_argument("--threads", default="1")
    args = ap.parse_args()
    subprocess.run(["dotnet", "build", "-c", "Release", "src/GpuDinoRnn.Cli", "-v", "q", "-nologo"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    cli = os.path.join(ROOT, "src", "GpuDinoRnn.Cli", "bin", "Release", "net10.0", "gpudinornn.dll")
    seeds = args.seeds.split(",")
    print(f"| model | command (`gpudinornn train ...`) | {' | '.join('seed ' + s for s in seeds)} | mean | train s (median) |")
    print("|---|---|" + "---:|" * (len(seeds) + 2))
    for label, extra in ROWS:
        vals, secs = [], []
        for seed in seeds:
            cmd = ["dotnet", cli, "train", "--device", "cpu", "--threads", args.threads, "--seed", seed,
                   "--sample-count", "0", "--log-format", "jsonl", *extra]
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
            summary = [json.loads(l) for l in out.splitlines() if '"summary"' in l][-1]
            vals.append(summary["val_bits_per_char"])
            secs.append(summary["train_seconds"])
        cells = " | ".join(f"{v:.3f}" for v in vals)
        print(f"| {label} | `{' '.join(extra) or '(defaults)'}` | {cells} | {statistics.mean(vals):.3f} | {statistics.median(secs):.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
