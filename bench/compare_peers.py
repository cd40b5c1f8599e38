#!/usr/bin/env python3
"""Times GpuDinoRnn's cpu backend and its peers (numpy, PyTorch nn.RNN, TorchSharp nn.RNN from
../shared/bench/peers) on the same four jobs, 1 thread each, alternating runs so that machine noise
hits every program alike, and prints median chars/s and GpuDinoRnn's speed-up over each peer.

    /usr/bin/python3 bench/compare_peers.py [--repeat 3] [--peers numpy,torch,torchsharp] [--json out.jsonl]

Needs the .NET SDK; python3-numpy and python3-torch (Debian) for the Python peers; TorchSharp is
built from the peers folder on first use (about 1.3 GB of NuGet packages). A peer that is missing
or fails is reported and left out, never guessed.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PEERS = os.path.join(ROOT, "..", "shared", "bench", "peers")
JOBS = [(50, 1, 1), (50, 32, 5), (128, 64, 5), (256, 256, 5)]  # hidden, batch, epochs
PY = "/usr/bin/python3"


def last_json(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers", default="numpy,torch,torchsharp")
    ap.add_argument("--json", help="also write every run as JSON lines")
    args = ap.parse_args()

    if not os.path.isdir(SHARED_PEERS):
        sys.exit(f"peers not found at {SHARED_PEERS}")
    work = tempfile.mkdtemp(prefix="gpudinornn-peers-")
    peers_dir = os.path.join(work, "peers")
    shutil.copytree(SHARED_PEERS, peers_dir)  # the TorchSharp build writes beside its sources
    data = os.path.join(ROOT, "data", "dinos.txt")

    subprocess.run(["dotnet", "build", "-c", "Release", "-v", "q", os.path.join(ROOT, "src", "GpuDinoRnn.Cli")], check=True,
                   stdout=subprocess.DEVNULL)
    ours = os.path.join(ROOT, "src", "GpuDinoRnn.Cli", "bin", "Release", "net10.0", "gpudinornn")
    tsdll = os.path.join(peers_dir, "TorchSharpRnn", "bin", "Release", "net10.0", "linux-x64", "TorchSharpRnn.dll")

    programs = {"gpudinornn": lambda h, b, e: [ours, "train", "--device", "cpu", "--threads", "1", "--data", data, "--hidden", str(h),
                                               "--batch", str(b), "--epochs", str(e), "--optimizer", "sgd", "--lr", "0.01", "--clip", "5", "--clip-mode", "value",
                                               "--val-fraction", "0", "--log-format", "jsonl", "--log-every", "100000000", "--sample-count", "0"]}
    common = lambda h, b, e: ["--data", data, "--hidden", str(h), "--batch", str(b), "--epochs", str(e), "--lr", "0.01", "--optim", "sgd",
                              "--clip", "5", "--threads", "1", "--seed", "1", "--dtype", "float32", "--quiet"]
    wanted = args.peers.split(",")
    if "numpy" in wanted:
        programs["numpy"] = lambda h, b, e: [PY, "numpy_batched.py", *common(h, b, e)]
    if "torch" in wanted:
        programs["torch nn.RNN"] = lambda h, b, e: [PY, "torch_rnn.py", "--impl", "nnrnn", *common(h, b, e)]
    if "torchsharp" in wanted:
        if not os.path.exists(tsdll):
            r = subprocess.run([os.path.join(peers_dir, "TorchSharpRnn", "build_torchsharp.sh")], cwd=peers_dir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                print(f"TorchSharp peer not built: {r.stderr.strip()[-300:]}", file=sys.stderr)
        if os.path.exists(tsdll):
            programs["TorchSharp nn.RNN"] = lambda h, b, e: ["dotnet", tsdll, "--impl", "nnrnn", *common(h, b, e)]

    speeds = {(name, job): [] for name in programs for job in JOBS}
    out = open(args.json, "w") if args.json else None
    for rep in range(args.repeat):
        for job in JOBS:
            for name, cmd in programs.items():  # alternating: every program once per job per round
                try:
                    r = last_json(cmd(*job), peers_dir)
                except RuntimeError as err:
                    print(f"skipped: {err}", file=sys.stderr)
                    continue
                speeds[(name, job)].append(r["chars_per_s"])
                if out:
                    out.write(json.dumps({"program": name, "hidden": job[0], "batch": job[1], "epochs": job[2], "round": rep,
                                          "chars_per_s": r["chars_per_s"]}) + "\n")
                print(f"round {rep + 1}: {name:18} h{job[0]} b{job[1]}: {r['chars_per_s']:>12,.0f} chars/s", file=sys.stderr)

    def med(name, job):
        v = speeds[(name, job)]
        return statistics.median(v) if v else None

    names = list(programs)
    print(f"\nmedian chars/s over {args.repeat} alternating rounds, 1 thread, float32, SGD lr 0.01, clip 5\n")
    print("| job | " + " | ".join(names) + " | " + " | ".join(f"× {n}" for n in names[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(names) - 1))
    for job in JOBS:
        ours_speed = med("gpudinornn", job)
        cells = [f"{med(n, job):,.0f}" if med(n, job) else "-" for n in names]
        ratios = [f"{ours_speed / med(n, job):.1f}" if ours_speed and med(n, job) else "-" for n in names[1:]]
        print(f"| h{job[0]} b{job[1]} e{job[2]} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
