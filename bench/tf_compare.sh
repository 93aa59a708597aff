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
  if [[ "${SKIP_TESSERA}" != 1 ]]; then
    echo "# tessera, --channels ${width}: ${binary}"
    # Its checkpoint, logs and TensorBoard files go to the scratch directory; no export.
    "${binary}" --channels "${width}" --threads "${THREADS}" --epochs "${EPOCHS}" --data "${DATA}" \
      --out "${work}/tessera-${width}" --export none >"${work}/tessera-${width}.log" 2>&1 ||
      { cat "${work}/tessera-${width}.log" >&2; exit 1; }
    tessera_line[${width}]="$(result_line "${work}/tessera-${width}.log")"
    echo "${tessera_line[${width}]}"
  fi
  echo "# keras, --channels ${width}: bench/keras_fashion.py"
  "${TF_VENV}/bin/python" "${repo_root}/bench/keras_fashion.py" --channels "${width}" --threads "${THREADS}" \
    --epochs "${EPOCHS}" --data "${DATA}" >"${work}/keras-${width}.log" 2>&1 ||
    { cat "${work}/keras-${width}.log" >&2; exit 1; }
  keras_line[${width}]="$(result_line "${work}/keras-${width}.log")"
  echo "${keras_line[${width}]}"
done

echo
printf '%-9s %-8s %11s %10s %9s %10s %14s\n' channels epochs "tessera_acc" "tessera_s" "keras_acc" "keras_s" "keras/tessera"
for width in ${WIDTHS}; do
  k="${keras_line[${width}]}"
  t="${tessera_line[${width}]:-}"
  k_acc="$(field "$k" test_accuracy)" k_s="$(field "$k" train_seconds)"
  if [[ -n "$t" ]]; then
    t_acc="$(field "$t" test_accuracy)" t_s="$(field "$t" train_seconds)"
    ratio="$(awk -v k="${k_s}" -v t="${t_s}" 'BEGIN { printf "%.2f", k / t }')"
  else
    t_acc="-" t_s="-" ratio="-"
  fi
  printf '%-9s %-8s %11s %10s %9s %10s %14s\n' "${width}/$((2 * width))" "${EPOCHS}" "${t_acc}" "${t_s}" "${k_acc}" "${k_s}" "${ratio}"
done
echo "# _acc: test accuracy after the last epoch; _s: training seconds (train_seconds, evaluation excluded)"
echo "# keras/tessera: Keras's training time over tessera's (above 1: tessera trains faster)"
