"""Shared pieces of the server tests: a tiny check counter in the format
tests/run adds up, a store ingested from tests/data/docs, and a `sabio serve`
process on a free loopback port (stopped at exit)."""
import atexit, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request, urllib.error

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SABIO = os.path.abspath(os.environ.get("SABIO", os.path.join(ROOT, "build", "sabio")))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
ENCODER = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
KEY = "sabio-test-key"


class Checks:
    def __init__(self, name):
        self.name, self.passed, self.failed, self.skipped = name, 0, 0, 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {self.name}: {what}", file=sys.stderr, flush=True)
        return cond

    def skip(self, why):
        self.skipped += 1
        print(f"SKIP {self.name}: {why}", file=sys.stderr, flush=True)

    def end(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed, {self.skipped} skipped", flush=True)
        sys.exit(1 if self.failed else 0)


def models_present():
    return os.path.isfile(MODEL) and os.path.isdir(ENCODER)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """`sabio serve` on the docs store; extra: more flags."""

    def __init__(self, *extra, api_key=KEY):
        self.tmp = tempfile.mkdtemp(prefix="sabio-serve-")
        atexit.register(shutil.rmtree, self.tmp, True)
        self.store = os.path.join(self.tmp, "docs")
        subprocess.run([SABIO, "ingest", "--store", self.store, "-m", ENCODER, os.path.join(ROOT, "tests/data/docs")],
                       check=False, capture_output=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.key = api_key
        # -t 1: the kernels' spinning thread pool collapses when the machine is oversubscribed
        # (CI and a shared machine); speed is bench/serve's business, not the tests'
        args = [SABIO, "serve", "-m", MODEL, "--store", f"docs={self.store}", "--embed-model", ENCODER,
                "--port", str(self.port), "-t", "1"] + list(extra)
        if api_key:
            args += ["--api-key", api_key]
        self.log = open(os.path.join(self.tmp, "server.log"), "w+")
        # SABIO_EXACT=1: float activations everywhere, so a prompt answered from a slot's cached
        # prefix gives the same greedy text as one evaluated from scratch
        # (a small ASan quarantine under make asan, so resident memory measures the server, not ASan)
        env = dict(os.environ, SABIO_EXACT="1",
                   ASAN_OPTIONS=(os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8").lstrip(":"))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        atexit.register(self.stop)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + self.log_text())
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not come up: " + self.log_text())

    def finish(self, t):
        """Stops the server; it must exit 0 with no sanitizer report (make asan)."""
        self.stop()
        log = self.log_text()
        bad = [m for m in ("AddressSanitizer", "LeakSanitizer", "runtime error:") if m in log]
        t.check(self.proc.returncode == 0 and not bad,
                f"server exits cleanly on SIGTERM (exit {self.proc.returncode}, {bad}): {log[-1500:]}")

    def log_text(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()[-20000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def request(self, method, path, body=None, headers=None, auth=True, timeout=120):
        h = {"Content-Type": "application/json"}
        if auth and self.key:
            h["Authorization"] = "Bearer " + self.key
        h.update(headers or {})
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1


def embed_reference(n):
    """The first n texts of tests/data/embed_ref_minilm.bin and sentence-transformers' vectors."""
    import struct
    d = open(os.path.join(ROOT, "tests/data/embed_ref_minilm.bin"), "rb").read()
    count, dim = struct.unpack_from("<II", d, 8)
    off, out = 16, []
    for _ in range(min(n, count)):
        (bl,) = struct.unpack_from("<I", d, off)
        off += 4
        text = d[off:off + bl].decode()
        off += bl
        out.append((text, struct.unpack_from("<%df" % dim, d, off)))
        off += 4 * dim
    return out
