#!/usr/bin/env bash
# The speed issue's GPU check, prepared to run once on a lent GPU machine (one call, minutes):
#  0. the kernels' PTX assembled by CUDA's ptxas for sm_90, where the machine has it;
#  1. correctness: ITERATIONS (100) iterations of each recipe on `cpu` and on every device named,
#     same seed and initial weights; every iteration's loss and gradient norm must be within 1e-4
#     relative of cpu's. The recipes reach every kernel: the default recipe and the course preset
#     (one vanilla layer: IlgpuBackend), the quality preset (2 GRU layers with dropout) and an LSTM
#     stack (IlgpuStackBackend);
#  2. sampling: a model trained on cpu, 1,000 names drawn on each device against cpu's (same seed;
#     the GPUs' exp differs in the last bits, so a few names may part: at least 95 % must agree);
#  3. speed: `bench` on the issue's four jobs and the default recipe's, `cpu` against each device
#     named, after the checks above whatever their outcome; each device's final loss after the
#     same steps must be within 1e-3 relative of cpu's;
#  4. on CUDA devices (named cuda or cuda:N), where the machine has CUDA's compute-sanitizer: tiny
#     runs, every kernel under memcheck, the passes with barriers under synccheck, the one with
#     shared memory under racecheck, vanilla and GRU steps under initcheck; last and within SANITIZER_SECONDS
#     (150), since the emulator cannot show a race, a barrier some threads miss or a read of
#     memory nothing wrote; a run that reports an error fails the check, one out of time is skipped.
# Everything printed goes to $OUT/log.txt too; bench's numbers to $OUT/bench-*.json, the runs'
# logs to $OUT/logs.tar.gz. The exit status is 1 if a device was off or failed.
#
# On the GPU machine, with the CLI packed by ../shared/tools/device-bundle.sh, the PTX written
# after it (step 0's comment) and .device carried:
#     bash bench/device-check.sh cuda
# Here, without a GPU, the same script on ILGPU's CPU accelerator (slow: keep it small):
#     ITERATIONS=10 JOBS=small bash bench/device-check.sh ilgpu-cpu
set -uo pipefail
cd "$(dirname "$0")/.."
export GPUDINORNN_TRACE=1 # a device's error comes with ILGPU's whole exception, before its one line

devices=("$@")
[ ${#devices[@]} -gt 0 ] || devices=(cuda)
iterations=${ITERATIONS:-100}
out=${OUT:-/tmp/gpudinornn-device-check}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
tee_pid=$!
finish() { # the exit status; the log written out before the run's files are taken
  exec >&- 2>&-
  wait "$tee_pid" 2>/dev/null
  exit "$1"
}
# The checks compare with python3; the bundle is an xz tarball, the logs a gzip one.
for tool in python3 xz gzip tar; do
  command -v "$tool" >/dev/null || { echo "device-check: $tool is missing on this machine"; finish 2; }
done

app=${GPUDINORNN:-}
if [ -z "$app" ]; then
  if [ -f .device/bundle.tar.xz ]; then
    mkdir -p /tmp/gpudinornn-app && tar xJf .device/bundle.tar.xz -C /tmp/gpudinornn-app
    app=/tmp/gpudinornn-app/gpudinornn
  else
    app=src/GpuDinoRnn.Cli/bin/Release/net10.0/gpudinornn
  fi
fi
[ -x "$app" ] || { echo "device-check: no gpudinornn at $app (pack it with device-bundle.sh, or build Release)"; finish 2; }

date -u
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
# Which driver libraries the loader knows (ILGPU asks for libcuda.so, the app falls back to libcuda.so.1).
ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libOpenCL\.so' || echo "ldconfig lists no libcuda or libOpenCL (LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-})"
# A driver mounted outside the loader's cache (/usr/local/nvidia in some containers) is found only
# through LD_LIBRARY_PATH: add its folder, and say so, rather than spend the run finding no GPU.
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    if [ -e "$dir/libcuda.so.1" ] && [[ ":${LD_LIBRARY_PATH:-}:" != *":$dir:"* ]]; then
      echo "device-check: libcuda.so.1 is in $dir, outside the loader's cache: adding it to LD_LIBRARY_PATH"
      export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
  done
fi
"$app" version
"$app" devices

failed=0
logs=$(mktemp -d)

# 0. The kernels' PTX through CUDA's own assembler, where the machine has one (the lent H200s have
#    CUDA 13): every kernel must assemble for sm_90; each one's registers and spills are printed
#    (a pass's group is at most 256 threads, which launches at any register count). The PTX is
#    written here beforehand by the compile tests:
#    GPUDINORNN_PTX_DIR=.device/ptx dotnet test -c Release --filter FullyQualifiedName~CompilesToPtx
ptxas=$(command -v ptxas || ls /usr/local/cuda/bin/ptxas 2>/dev/null || true)
ptx=(${PTX_DIR:-.device/ptx}/*.ptx)
if [ -z "$ptxas" ]; then
  echo "ptx: no ptxas on this machine, skipped"
elif [ ! -e "${ptx[0]}" ]; then
  echo "FAIL ptx: no PTX files in ${PTX_DIR:-.device/ptx} (see the comment above): not checked"
  failed=1
else
  "$ptxas" --version | tail -1
  # The CUDA 13 driver's PTX is ISA 8.8, which ptxas knows from CUDA 12.9 on: an older toolkit
  # beside a newer driver assembles the CUDA 12 driver's PTX (ISA 8.0) alone, saying so.
  release=$("$ptxas" --version | grep -o 'release [0-9]*\.[0-9]*' | cut -d' ' -f2)
  if [ -n "$release" ] && [ "$(printf '%s\n' "$release" 12.9 | sort -V | head -1)" != 12.9 ]; then
    echo "ptx: ptxas $release predates PTX ISA 8.8: assembling the CUDA 12 driver's PTX only"
    ptx=(${PTX_DIR:-.device/ptx}/*.cuda12.ptx)
  fi
  for f in "${ptx[@]}"; do
    if info=$("$ptxas" -arch=sm_90 -v -o /dev/null "$f" 2>&1); then
      echo "ok   $(basename "$f" .ptx): $(grep -E 'Used [0-9]+ registers' <<< "$info" | sed 's/.*: //' | head -1); $(grep -E 'spill' <<< "$info" | sed 's/^ *//' | head -1)"
    else
      echo "FAIL $(basename "$f" .ptx): ptxas refused it"; echo "$info" | tail -5; failed=1
    fi
  done
fi

# 1. Correctness.
reason() { # a failed run's last lines of standard error, without a stack trace's frames
  grep -v '^\s*at ' "$1" | tail -3 | tr '\n' ' '
}
recipes=(
  "default"
  "course --preset course"
  "quality --preset quality"
  "lstm --cell lstm --layers 2 --dropout 0.2 --hidden 50"
)
for entry in "${recipes[@]}"; do
  read -r recipe options <<< "$entry"
  read -ra options <<< "${options:-}"
  for d in cpu "${devices[@]}"; do
    if ! "$app" train "${options[@]}" --iterations "$iterations" --log-every 1 --log-format jsonl --seed 1 --device "$d" \
        > "$logs/$recipe-$d.jsonl" 2> "$logs/$recipe-$d.err"; then
      echo "FAIL $recipe on $d: $(reason "$logs/$recipe-$d.err")"
      failed=1
    fi
  done
  for d in "${devices[@]}"; do
    [ -s "$logs/$recipe-$d.jsonl" ] || continue
    python3 - "$logs/$recipe-cpu.jsonl" "$logs/$recipe-$d.jsonl" "$recipe" "$d" "$iterations" <<'EOF' || failed=1
import json, sys
def steps(path):  # the step records (evaluations and samples are events of their own)
    return {r["iteration"]: r for r in map(json.loads, open(path)) if "iteration" in r and "event" not in r}
cpu, dev, recipe, device, n = steps(sys.argv[1]), steps(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
if len(cpu) != n or sorted(cpu) != sorted(dev):
    sys.exit(f"FAIL {recipe} on {device}: {len(dev)} logged iterations against cpu's {len(cpu)} (wanted {n})")
def worst(key):
    return max((abs(dev[i][key] - cpu[i][key]) / max(abs(cpu[i][key]), 1e-30), i) for i in cpu)
(loss, at_loss), (norm, at_norm) = worst("loss"), worst("grad_norm")
# The first step's difference is rounding alone (FMA, the GPU's exp and log); a bug shows there
# at full size, where rounding drift would grow from a few 1e-7 over the steps.
first = min(cpu)
at_first = abs(dev[first]["loss"] - cpu[first]["loss"]) / max(abs(cpu[first]["loss"]), 1e-30)
ok = loss <= 1e-4 and norm <= 1e-4
print(f"{'ok  ' if ok else 'FAIL'} {recipe} on {device}, {n} iterations against cpu: worst relative difference "
      f"{loss:.2e} in the loss (iteration {at_loss}), {norm:.2e} in the gradient norm (iteration {at_norm}); "
      f"first iteration's loss {at_first:.2e}; final loss {dev[max(dev)]['loss']:.6f} against {cpu[max(cpu)]['loss']:.6f}")
sys.exit(0 if ok else 1)
EOF
  done
done

# 2. Sampling: one model, names drawn on cpu and on each device.
model="$logs/model.safetensors"
if "$app" train --iterations "$iterations" --seed 1 --device cpu --checkpoint "$model" > /dev/null 2> "$logs/model.err"; then
  for d in cpu "${devices[@]}"; do
    "$app" sample --model "$model" --count 1000 --seed 3 --format jsonl --device "$d" > "$logs/sample-$d.jsonl" 2> "$logs/sample-$d.err" ||
      { echo "FAIL sampling on $d: $(reason "$logs/sample-$d.err")"; failed=1; }
  done
  for d in "${devices[@]}"; do
    [ -s "$logs/sample-$d.jsonl" ] || continue
    python3 - "$logs/sample-cpu.jsonl" "$logs/sample-$d.jsonl" "$d" <<'EOF' || failed=1
import json, sys
cpu, dev = ([json.loads(line) for line in open(p)] for p in sys.argv[1:3])
pairs = [(a, b) for a, b in zip(cpu, dev) if a["name"] == b["name"]]
worst = max((abs(a["log_probability"] - b["log_probability"]) for a, b in pairs), default=0.0)
ok = len(cpu) == len(dev) == 1000 and len(pairs) >= 950 and worst <= 1e-3
print(f"{'ok  ' if ok else 'FAIL'} sampling on {sys.argv[3]}: {len(pairs)} of {len(dev)} names as on cpu "
      f"(1,000 drawn, 950 wanted); worst log-probability difference {worst:.2e} among them")
sys.exit(0 if ok else 1)
EOF
  done
else
  echo "FAIL sampling: the model did not train on cpu: $(tail -1 "$logs/model.err")"
  failed=1
fi
archive() { tar -C "$logs" -czf "$out/logs.tar.gz" . || { echo "FAIL the logs could not be archived into $out/logs.tar.gz"; failed=1; }; }
archive

# 3. Speed: the issue's four jobs (hidden, batch), then the default recipe's.
list=$(IFS=,; echo "cpu,${devices[*]}")
if [ "${JOBS:-all}" = small ]; then
  jobs=("50 1 5" "50 32 5")
else
  jobs=("50 1 50" "50 32 50" "128 64 50" "256 256 20" "192 16 50")
fi
for job in "${jobs[@]}"; do
  read -r h b steps <<< "$job"
  "$app" bench --devices "$list" --hidden "$h" --batch "$b" --steps "$steps" --json "$out/bench-h$h-b$b.json" || { failed=1; continue; }
  python3 - "$out/bench-h$h-b$b.json" <<'EOF' || failed=1
import json, sys
results = json.load(open(sys.argv[1]))["results"]
cpu = next(r["final_loss"] for r in results if r["device_id"] == "cpu")
bad = [f'{r["device"]}: {r["final_loss"]} against {cpu}' for r in results if abs(r["final_loss"] - cpu) > 1e-3 * abs(cpu)]
name = sys.argv[1].rsplit("/", 1)[-1]
print(f"FAIL {name}: a final loss off cpu's: {'; '.join(bad)}" if bad else f"ok   {name}: every final loss within 1e-3 of cpu's")
sys.exit(1 if bad else 0)
EOF
done

# 4. compute-sanitizer on tiny runs (24 names, batch 3, 2 iterations): H 33 keeps Waa in shared
#    memory with two warps, the second partly idle; H 111 reads the transposed copy (its H² floats
#    pass 48 KB); the LSTM stack with dropout and the GRU reach the stacked kernels; continuous
#    text carries the state between steps (CarryState); sampling reaches the sampler's. API errors are not reported (ILGPU probes attributes a device may lack). initcheck
#    leaves sampling out: its one copy of the ids takes whole rows, the unwritten tails included.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
cuda=()
for d in "${devices[@]}"; do [[ $d == cuda* ]] && cuda+=("$d"); done
if [ ${#cuda[@]} -eq 0 ]; then
  :
elif [ -z "$sanitizer" ]; then
  echo "sanitizer: no compute-sanitizer on this machine, skipped"
else
  head -n 24 data/dinos.txt > "$logs/tiny.txt"
  tiny=(--data "$logs/tiny.txt" --batch 3 --iterations 2 --val-fraction 0 --sample-count 0 --seed 1)
  runs=(
    "memcheck rnn-h33 train --hidden 33 --text-mode continuous --seq-length 8"
    "racecheck rnn-h33 train --hidden 33"
    "synccheck rnn-h33 train --hidden 33"
    "initcheck rnn-h33 train --hidden 33 --text-mode continuous --seq-length 8"
    "memcheck rnn-h111 train --hidden 111"
    "memcheck lstm train --cell lstm --layers 2 --dropout 0.2 --hidden 33 --text-mode continuous --seq-length 8"
    "synccheck lstm train --cell lstm --layers 2 --dropout 0.2 --hidden 33"
    "initcheck gru train --cell gru --layers 2 --hidden 33"
    "memcheck gru train --cell gru --layers 2 --dropout 0.2 --hidden 33"
    "memcheck sample sample"
  )
  budget=${SANITIZER_SECONDS:-150}
  began=$SECONDS
  for d in "${cuda[@]}"; do
    for entry in "${runs[@]}"; do
      read -r tool name verb options <<< "$entry"
      read -ra options <<< "${options:-}"
      if [ $((SECONDS - began)) -ge "$budget" ]; then
        echo "sanitizer: $tool $name on $d skipped: the ${budget} s were spent"
        continue
      fi
      if [ "$verb" = sample ]; then
        [ -f "$model" ] || { echo "sanitizer: $tool $name on $d skipped: no model"; continue; }
        args=(sample --model "$model" --count 64 --seed 3)
      else
        args=(train "${tiny[@]}" "${options[@]}")
      fi
      log="$logs/sanitizer-$tool-$name-$d.txt"
      # -k: the program takes SIGTERM as Ctrl-C and finishes its step, which a hung kernel never does.
      timeout -k 10 $((budget - (SECONDS - began) + 10)) "$sanitizer" --tool "$tool" --report-api-errors no --error-exitcode 99 --print-limit 20 \
        "$app" "${args[@]}" --device "$d" > "$log" 2>&1
      rc=$?
      summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1 | sed 's/^=* *//')
      if [ $rc = 0 ]; then
        echo "ok   sanitizer $tool $name on $d: ${summary:-no summary}"
      elif [ $rc = 124 ] || [ $rc = 137 ]; then # timed out (137: it had to be killed)
        echo "sanitizer: $tool $name on $d did not finish in time (exit $rc): not checked"
      elif [ $rc = 99 ]; then
        echo "FAIL sanitizer $tool $name on $d: $summary"
        grep -E '^=+ +(Invalid|Race|Barrier|Uninitialized|Error|Warning)' "$log" | head -5
        failed=1
      else
        echo "FAIL sanitizer $tool $name on $d: the run failed (exit $rc): $(reason "$log")"
        failed=1
      fi
    done
  done
  archive
fi

[ $failed = 0 ] && echo "device-check: every check passed" || echo "device-check: FAILED (see above)"
finish $failed
