#!/usr/bin/env bash
# Trains the main job's CNN with tessera (examples/fashion_mnist.cpp) and with Keras on TensorFlow
# (bench/keras_fashion.py: the same model, recipe and data), one run after the other, at the default
# width (16/32 channels) and at --channels 32 (32/64), and prints their result lines side by side
# with the ratio of training times. Not part of CI; it installs tensorflow-cpu from PyPI.
#
#   bench/tf_compare.sh [FASHION_MNIST_BINARY]      (default: build/examples/fashion_mnist, what
#                                                   scripts/run.sh builds)
#
# Environment:
#   TF_VENV   virtual environment for TensorFlow, created on first use (default /tmp/tessera-tf-venv)
#   THREADS   threads of both programs (default 2: the development machine's cores)
#   EPOCHS    training epochs (default 2, the main job's)
#   WIDTHS    --channels values to compare (default "16 32")
#   SEEDS     --seed values, each run by both programs (default "1"); with several, the table shows
#             the mean accuracy and time over them and the accuracies' range (seed noise)
#   DATA      Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist, Debian's
#             dataset-fashion-mnist)
#   SKIP_TESSERA=1  runs the Keras side only (no tessera binary needed)
#   LOG_DIR   keeps each program's full output there (default: a scratch directory, removed)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${1:-${repo_root}/build/examples/fashion_mnist}"
TF_VENV="${TF_VENV:-/tmp/tessera-tf-venv}"
THREADS="${THREADS:-2}"
EPOCHS="${EPOCHS:-2}"
WIDTHS="${WIDTHS:-16 32}"
DATA="${DATA:-/usr/share/datasets/fashion-mnist}"
SKIP_TESSERA="${SKIP_TESSERA:-0}"
SEEDS="${SEEDS:-1}"

if [[ ! -f "${DATA}/train-images-idx3-ubyte.gz" ]]; then
  echo "tf_compare.sh: no Fashion-MNIST in ${DATA} (Debian: apt-get install dataset-fashion-mnist)" >&2
  exit 2
fi
if [[ "${SKIP_TESSERA}" != 1 && ! -x "${binary}" ]]; then
  echo "tf_compare.sh: ${binary} is not built (scripts/run.sh builds it, then trains; or pass the binary's path," \
       "or SKIP_TESSERA=1 for the Keras side alone)" >&2
  exit 2
fi

# TensorFlow in its own virtual environment, reused by later runs.
if [[ ! -x "${TF_VENV}/bin/python" ]]; then
  python3 -m venv "${TF_VENV}"
fi
if ! "${TF_VENV}/bin/python" -c "import tensorflow" 2>/dev/null; then
  "${TF_VENV}/bin/pip" install --quiet --upgrade pip
  "${TF_VENV}/bin/pip" install --quiet tensorflow-cpu
fi
tf_version="$("${TF_VENV}/bin/python" -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null)"
echo "# tensorflow-cpu ${tf_version} in ${TF_VENV}; ${THREADS} thread(s), ${EPOCHS} epoch(s), $(nproc) core(s)"

# Each program's output goes to a log; the result line is its last line that starts with this.
result_line() { grep '^{"test_accuracy"' "$1" | tail -n 1; }
field() { sed -n "s/.*\"$2\": \\([0-9.]*\\).*/\\1/p" <<<"$1"; }

if [[ -n "${LOG_DIR:-}" ]]; then
  mkdir -p "${LOG_DIR}"
  work="$(cd "${LOG_DIR}" && pwd)"
else
  work="$(mktemp -d /tmp/tessera-tf-compare.XXXXXX)"
  trap 'rm -rf "${work}"' EXIT
fi

declare -A tessera_line keras_line
# One program at a time: on a small machine two would take each other's cores.
for width in ${WIDTHS}; do
  for seed in ${SEEDS}; do
    run="${width}-${seed}"
    if [[ "${SKIP_TESSERA}" != 1 ]]; then
      echo "# tessera, --channels ${width} --seed ${seed}: ${binary}"
      # Its checkpoint, logs and TensorBoard files go to the scratch directory; no export.
      "${binary}" --channels "${width}" --seed "${seed}" --threads "${THREADS}" --epochs "${EPOCHS}" --data "${DATA}" \
        --out "${work}/tessera-${run}" --export none >"${work}/tessera-${run}.log" 2>&1 ||
        { cat "${work}/tessera-${run}.log" >&2; exit 1; }
      tessera_line[${run}]="$(result_line "${work}/tessera-${run}.log")"
      echo "${tessera_line[${run}]}"
    fi
    echo "# keras, --channels ${width} --seed ${seed}: bench/keras_fashion.py"
    "${TF_VENV}/bin/python" "${repo_root}/bench/keras_fashion.py" --channels "${width}" --seed "${seed}" \
      --threads "${THREADS}" --epochs "${EPOCHS}" --data "${DATA}" >"${work}/keras-${run}.log" 2>&1 ||
      { cat "${work}/keras-${run}.log" >&2; exit 1; }
    keras_line[${run}]="$(result_line "${work}/keras-${run}.log")"
    echo "${keras_line[${run}]}"
  done
done

# "mean min max" of one field over the seeds' result lines of one program and width, with the
# given number of decimals.
stats() {
  local -n lines=$1
  local values=""
  for seed in ${SEEDS}; do
    [[ -n "${lines[$2-${seed}]:-}" ]] && values+="$(field "${lines[$2-${seed}]}" "$3") "
  done
  [[ -z "${values}" ]] && { echo "- - -"; return; }
  awk -v d="$4" '{ s = 0; lo = $1; hi = $1; for (i = 1; i <= NF; ++i) { s += $i; if ($i < lo) lo = $i; if ($i > hi) hi = $i }
                   f = "%." d "f"; printf f " " f " " f, s / NF, lo, hi }' <<<"${values}"
}

seeds=$(wc -w <<<"${SEEDS}")
echo
printf '%-9s %-6s %-5s %11s %15s %10s %9s %15s %10s %14s
' channels epochs seeds "tessera_acc" "(range)" "tessera_s" \
  "keras_acc" "(range)" "keras_s" "keras/tessera"
for width in ${WIDTHS}; do
  read -r t_acc t_lo t_hi <<<"$(stats tessera_line "${width}" test_accuracy 4)"
  read -r t_s _ _ <<<"$(stats tessera_line "${width}" train_seconds 1)"
  read -r k_acc k_lo k_hi <<<"$(stats keras_line "${width}" test_accuracy 4)"
  read -r k_s _ _ <<<"$(stats keras_line "${width}" train_seconds 1)"
  ratio="-"
  [[ "${t_s}" != "-" ]] && ratio="$(awk -v k="${k_s}" -v t="${t_s}" 'BEGIN { printf "%.2f", k / t }')"
  printf '%-9s %-6s %-5s %11s %15s %10s %9s %15s %10s %14s
' "${width}/$((2 * width))" "${EPOCHS}" "${seeds}" "${t_acc}" \
    "${t_lo}-${t_hi}" "${t_s}" "${k_acc}" "${k_lo}-${k_hi}" "${k_s}" "${ratio}"
done
echo "# _acc: test accuracy after the last epoch, the mean over the seeds (range: lowest-highest); _s: mean"
echo "# training seconds (train_seconds, evaluation excluded); keras/tessera: Keras's mean training time"
echo "# over tessera's (above 1: tessera trains faster)"
