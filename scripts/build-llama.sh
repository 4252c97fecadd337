#!/usr/bin/env bash
# Compiles llama-cpp-python (a source package only on these registries) once per machine and caches the wheel,
# so a second `make setup`, or a fresh venv, installs it in seconds. Prints the directory the wheel is in.
#   LLAMA_CMAKE_ARGS   what llama.cpp is built with (default: portable across x86-64 CPUs, no multimodal
#                      helper); e.g. "-DGGML_CUDA=on" for a GPU build. Each setting gets its own cached wheel.
#   VOICE_TUTOR_CACHE  where wheels are kept (default: ~/.cache/voice-tutor).
set -euo pipefail
python="$1"
version="$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' "${LOCK:-requirements.lock}" | head -1)"
args="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}"
key="$(printf '%s' "$version $args" | sha256sum | cut -c1-12)"
dir="${VOICE_TUTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/voice-tutor}/wheels/llama-$key"
if ! ls "$dir"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  if ! command -v g++ >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing a C++ compiler (g++) from Debian's packages, to build llama.cpp" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends g++ make >/dev/null
  fi
  echo "building llama-cpp-python $version ($args): about 4 minutes on 2 cores, once" >&2
  mkdir -p "$dir"
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$python" -m pip wheel -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -w "$dir" >&2
fi
echo "$dir"
