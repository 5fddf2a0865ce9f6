"""A real `roost serve` daemon for the browser and desktop tests: its own data
directory, every listener on a random loopback port, and a small client for
its admin API."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


class Device:
    """A data dir with a running daemon; `url`, `address`, `token` and `dir`."""

    def __init__(self, roost: Path, root: Path, name: str):
        self.dir = root / name
        self.env = dict(os.environ, XDG_CONFIG_HOME=str(root / (name + ".no-config")), RUST_LOG="info")
        subprocess.run([roost, "--data-dir", self.dir, "init"], check=True, env=self.env, capture_output=True)
        self.log_path = root / (name + ".log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [roost, "--data-dir", self.dir, "serve", "--listen-sync", "127.0.0.1:0", "--listen-imap", "127.0.0.1:0",
             "--listen-imaps", "127.0.0.1:0", "--listen-lmtp", "127.0.0.1:0", "--listen-admin", "127.0.0.1:0"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while not (self.dir / "admin-addr").exists():
            assert self.proc.poll() is None, f"{name}: daemon exited"
            assert time.time() < deadline, f"{name}: admin API did not start"
            time.sleep(0.05)
        self.address = (self.dir / "admin-addr").read_text().strip()
        self.url = "http://" + self.address + "/"
        self.token = (self.dir / "admin.token").read_text().strip()

    def api(self, method: str, path: str, body=None):
        """Calls the admin API with the token; the decoded JSON answer, or an
        AssertionError naming the status and the server's message."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        request.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}") from None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()

    def check_log(self):
        """The token never reaches the log and nothing panicked."""
        log = self.log_path.read_text()
        assert self.token not in log, "the admin token reached the log"
        assert "panicked" not in log, log
