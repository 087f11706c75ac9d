#!/usr/bin/env bash
# A CUDA 13.0 build toolchain without a system toolkit, so `--features cuda` compiles, links and lints
# on a machine with no GPU and no nvcc (scripts/test.sh, bench/gpu-prepare.sh). nvcc, headers and cudart
# come from NVIDIA's PyPI wheels; libcuda, cuBLAS, cuBLASLt, cuRAND and NVRTC are link-time stubs whose
# symbols are the names cudarc loads. The stubs only satisfy the linker: the binary runs where the real
# driver and libraries are (a GPU machine, with LD_LIBRARY_PATH pointing at its CUDA libraries).
# Adapted from the team kit ../shared/gpu/cuda-toolchain.sh; here it honours CARGO_HOME and PIP, takes
# cudarc's version from Cargo.lock and runs `cargo fetch` itself when cudarc's source is missing.
#
# Usage: eval "$(scripts/cuda-toolchain.sh [DIR])"   (DIR default: ~/.cache/cuda-wheels-13.0, reused)
#        then: cargo build --release --features cuda -p icdtune
# Prints only the exports on stdout (CUDA_HOME, CUDA_PATH, PATH, CUDA_COMPUTE_CAP default 90 = Hopper);
# progress and errors go to stderr. Needs pip (PIP, default `python3 -m pip`), unzip and gcc.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$HOME/.cache/cuda-wheels-13.0}
root=$dir/site/nvidia/cu13
PIP=${PIP:-python3 -m pip}
for tool in unzip gcc; do
  command -v "$tool" >/dev/null || { echo "error: '$tool' is required to set up the CUDA toolchain" >&2; exit 1; }
done

if [ ! -x "$root/bin/nvcc" ]; then
  echo "fetching CUDA 13.0 nvcc, headers and runtime from PyPI into $dir" >&2
  mkdir -p "$dir/whl"
  $PIP download -q --no-deps -d "$dir/whl" "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-crt==13.0.*" \
    "nvidia-nvvm==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" >&2
  for w in "$dir"/whl/*.whl; do unzip -q -o "$w" -d "$dir/site"; done
  [ -x "$root/bin/nvcc" ] || { echo "error: the wheels in $dir/whl hold no $root/bin/nvcc" >&2; exit 1; }
fi

version=$(awk '$0 == "name = \"cudarc\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' "$repo/Cargo.lock")
[ -n "$version" ] || { echo "error: no cudarc in $repo/Cargo.lock" >&2; exit 1; }
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
find_src() { find "$registry" -mindepth 2 -maxdepth 2 -type d -name "cudarc-$version" 2>/dev/null | head -1 || true; }
src=$(find_src)
if [ -z "$src" ]; then
  (cd "$repo" && cargo fetch >&2)
  src=$(find_src)
fi
[ -n "$src" ] || { echo "error: cudarc-$version source not found under $registry after cargo fetch" >&2; exit 1; }

# One stub library: every symbol cudarc's loader names in module $1, as an empty function.
stub() { # module soname linkname
  local syms
  syms=$(grep -oh 'load::<_F>("[A-Za-z0-9_]*")' "$src/src/$1/sys/mod.rs" | sed 's/.*("\(.*\)")/\1/' | sort -u) || true
  [ -n "$syms" ] || { echo "error: no symbols found in $src/src/$1/sys/mod.rs" >&2; exit 1; }
  printf '%s\n' "$syms" | awk '{print "void " $1 "(void){}"}' > "$dir/$3.c"
  gcc -shared -fPIC -Wl,-soname,"$2" -o "$root/lib/$2" "$dir/$3.c"
  ln -sf "$2" "$root/lib/lib$3.so"
}
stub driver libcuda.so.1 cuda
stub cublas libcublas.so.13 cublas
stub cublaslt libcublasLt.so.13 cublasLt
stub curand libcurand.so.10 curand
stub nvrtc libnvrtc.so.13 nvrtc
ln -sf libcudart.so.13 "$root/lib/libcudart.so"
echo "export CUDA_HOME=$root CUDA_PATH=$root PATH=$root/bin:\$PATH CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
