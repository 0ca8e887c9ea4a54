"""The baseline a user would pick instead of the gateway: nginx proxying to both backends.

`start_nginx` writes `nginx.conf` into its run dir and runs Debian's `nginx` in the
foreground on a free loopback port (pid, logs and temp files in the run dir, never
/var). One server answers three prefixes, all with a TF Serving REST body:

- `/tf/v1/models/{m}:predict` -> TF Serving `/v1/models/{m}:predict`
- `/torch/v1/models/{m}:predict` -> TorchServe `/predictions/{m}` with the inference key
- `/v1/models/{m}:predict` -> one of the two, weighted by `split_clients` per request

Both upstreams use pooled keep-alive connections, like the gateway.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from backends.process import free_port, port_open


class NginxError(RuntimeError):
    """nginx is missing, or did not start."""


@dataclass(frozen=True)
class Nginx:
    url: str
    process: subprocess.Popen[bytes]
    run_dir: Path


def render_conf(
    run_dir: Path, port: int, tf_rest: str, torch_rest: str, token: str, tf_weight: int = 50
) -> str:
    """nginx.conf for the weighted proxy; `tf_rest`/`torch_rest` are host:port."""
    temp = {k: run_dir / "tmp" / k for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    temps = "\n".join(f"  {k}_temp_path {v};" for k, v in temp.items())
    user = "user root;\n" if os.geteuid() == 0 else ""
    split = f"{tf_weight}% tf;\n    * torch;" if tf_weight < 100 else "* tf;"
    return f"""{user}worker_processes 1;
pid {run_dir / "nginx.pid"};
error_log {run_dir / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temps}
  client_body_buffer_size 1m;
  upstream tensorflow {{ server {tf_rest}; keepalive 128; }}
  upstream pytorch {{ server {torch_rest}; keepalive 128; }}
  split_clients "${{request_id}}" $arm {{
    {split}
  }}
  server {{
    listen 127.0.0.1:{port};
    location /v1/ {{ rewrite ^(.*)$ /$arm$1 last; }}
    location /tf/ {{
      rewrite ^/tf(/.*)$ $1 break;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://tensorflow;
    }}
    location /torch/ {{
      rewrite ^/torch/v1/models/([^/:]+):predict$ /predictions/$1 break;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {token}";
      proxy_pass http://pytorch;
    }}
  }}
}}
"""


def start_nginx(
    run_dir: Path, tf_rest: str, torch_rest: str, token: str, timeout: float = 15.0
) -> Nginx:
    """Start nginx in the foreground (`daemon off`) and wait until its port accepts."""
    run_dir = run_dir.resolve()  # nginx resolves relative paths against its prefix
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        raise NginxError("nginx is not installed: run scripts/setup.sh (apt-get install nginx)")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = run_dir / "nginx.conf"
    conf.write_text(render_conf(run_dir, port, _hostport(tf_rest), _hostport(torch_rest), token))
    argv = [binary, "-p", str(run_dir), "-e", str(run_dir / "error.log"), "-c", str(conf)]
    with (run_dir / "nginx.out").open("wb") as log:
        process = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=log, stderr=log)
    _wait_for_port(process, port, timeout, run_dir)
    return Nginx(f"http://127.0.0.1:{port}", process, run_dir)


def stop_nginx(nginx: Nginx, timeout: float = 10.0) -> None:
    """Graceful quit (SIGQUIT), then SIGKILL; by pid, never by name."""
    if nginx.process.poll() is None:
        nginx.process.send_signal(signal.SIGQUIT)
        try:
            nginx.process.wait(timeout)
        except subprocess.TimeoutExpired:
            nginx.process.kill()
            nginx.process.wait(timeout)


def nginx_version() -> str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    try:
        done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=5)
    except OSError:
        return "not installed"
    return done.stderr.strip().removeprefix("nginx version: ")


def _hostport(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def _wait_for_port(
    process: subprocess.Popen[bytes], port: int, timeout: float, run_dir: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = " ".join(
                (run_dir / name).read_text(errors="replace")[-800:]
                for name in ("nginx.out", "error.log")
                if (run_dir / name).exists()
            )
            raise NginxError(f"nginx exited with {process.returncode}: {log}")
        if port_open(port, timeout=0.5):
            return
        time.sleep(0.1)
    process.kill()
    process.wait(5)
    raise NginxError(f"nginx did not open 127.0.0.1:{port} within {timeout:.0f} s")
