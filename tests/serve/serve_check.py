#!/usr/bin/env python3
"""Checks the tessera-serve binary as a process, with real clients: curl, and Triton's Python client.

Usage: serve_check.py <tessera-serve> <models_dir>

<models_dir> is what test_serve_fashion_models leaves with TESSERA_SERVE_MODELS set: fashion/1 and
fashion/2 (fashion_cnn, input "images" [-1, 1, 28, 28]), mlp/1 (fashion_mlp, input "images"
[-1, 784]), both answering "probabilities" [-1, 10], and models.config serving "fashion" with
policy `all` and labels stable -> 1, canary -> 2, and "mlp" with the default policy (latest 1).
The directory is copied to a temporary one first (the hot-reload check adds a version there), so
the check can be rerun on the same directory.

Sections, each reported on its own (a failure ends its section, not the run):
  flags       --help, an unknown flag, no model, a missing config file, a missing base path
  rest/curl   TensorFlow Serving's REST API with curl: :predict in row and column form, labels,
              model status, metadata, a 404 error, the Prometheus metrics
  triton      tritonclient.http.InferenceServerClient: health, readiness, metadata, infer with
              binary and JSON inputs and outputs, named versions, errors, both models; every
              answer equal to the REST :predict answer for the same images
  reload      both versions of "fashion" served under their labels; a new version of "mlp" taken
              up (and the old one unloaded) by the file-system poll
  process     a second server on a port in use exits 1
  sigterm     SIGTERM under load from 4 client threads: exit status 0 within 10 s, "stopped"
              printed, every request that got an HTTP answer got 200
Prints one line per check; exit status 0 when all pass, 1 otherwise. Only loopback addresses are
used; every server process started here is killed at the end.
"""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np

HOST = "127.0.0.1"
START_TIMEOUT = 60  # seconds for the server to load the models and print its port


class CheckFailed(Exception):
    pass


def ok(name, detail=""):
    print("ok    %s%s" % (name, ": " + detail if detail else ""), flush=True)


def require(cond, name, message):
    if not cond:
        raise CheckFailed("%s: %s" % (name, message))


def one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# ---- the server process ---------------------------------------------------------------------


class Server:
    """A tessera-serve process; its stdout and stderr are collected by reader threads."""

    def __init__(self, binary, args, wait_for_port=True):
        self.args = [binary] + list(args)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.stdout_lines = []
        self.stderr_lines = []
        self._lines = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines, False), daemon=True),
        ]
        for r in self._readers:
            r.start()
        self.port = None
        if wait_for_port:
            self.port = self._wait_for_port()
            self.url = "http://%s:%d" % (HOST, self.port)

    def _read(self, stream, into, forward):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            into.append(line)
            if forward:
                self._lines.put(line)
        if forward:
            self._lines.put(None)

    def _wait_for_port(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            m = re.search(r"listening on http://([0-9.]+):(\d+)", line)
            if m:
                if m.group(1) != HOST:
                    raise CheckFailed("server start: listens on %s, expected %s" % (m.group(1), HOST))
                return int(m.group(2))
        self.kill()
        raise CheckFailed(
            "server start: %s printed no 'listening on http://%s:PORT' within %d s (exit status %s); stdout: %s; stderr: %s"
            % (" ".join(self.args), HOST, START_TIMEOUT, self.proc.returncode, one_line(" | ".join(self.stdout_lines)),
               one_line(" | ".join(self.stderr_lines))))

    def output(self):
        return "stdout: %s; stderr: %s" % (one_line(" | ".join(self.stdout_lines)), one_line(" | ".join(self.stderr_lines)))

    def wait(self, timeout):
        """The exit status, or None when still running after `timeout` seconds."""
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for r in self._readers:
            r.join(timeout=5)
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for r in self._readers:
            r.join(timeout=5)


def describe_status(status):
    if status is None:
        return "still running"
    if status < 0:
        try:
            return "killed by %s" % signal.Signals(-status).name
        except ValueError:
            return "killed by signal %d" % -status
    return "exit status %d" % status


# ---- HTTP without a client library (no proxies: loopback only) -------------------------------

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, headers=None, timeout=30):
    """(status, body bytes, headers) of one request; HTTP errors are answers, not exceptions."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with _opener.open(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def http_json(method, url, body=None, expect=200, name=None):
    status, raw, _ = http(method, url, body)
    name = name or "%s %s" % (method, url)
    require(status == expect, name, "HTTP %d, expected %d: %s" % (status, expect, one_line(raw.decode("utf-8", "replace"))))
    try:
        return json.loads(raw)
    except ValueError as e:
        raise CheckFailed("%s: the answer is not JSON (%s): %s" % (name, e, one_line(raw.decode("utf-8", "replace"))))


def predict(server, path, images, form="instances"):
    """The probabilities a TensorFlow Serving :predict answers, as a float32 array."""
    body = {form: images.tolist()}
    j = http_json("POST", server.url + path, body, name="POST %s (%s)" % (path, form))
    key = "predictions" if form == "instances" else "outputs"
    require(key in j, "POST " + path, "no '%s' in the answer: %s" % (key, one_line(j)))
    return np.asarray(j[key], dtype=np.float32)


def check_probabilities(p, rows, name):
    require(p.shape == (rows, 10), name, "shape %s, expected (%d, 10)" % (p.shape, rows))
    require(p.dtype == np.float32, name, "dtype %s, expected float32" % p.dtype)
    require(np.all(np.isfinite(p)) and np.all(p >= 0) and np.all(p <= 1), name, "not probabilities: %s" % p)
    sums = p.astype(np.float64).sum(axis=1)
    require(np.allclose(sums, 1.0, atol=1e-5), name, "rows sum to %s, not 1" % sums)


def check_equal(got, expected, name):
    require(got.shape == expected.shape, name, "shape %s, the REST answer's is %s" % (got.shape, expected.shape))
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    require(np.allclose(got, expected, rtol=0, atol=1e-6), name, "differs from the REST :predict answer by %g" % diff)
    return diff


# ---- the model directory --------------------------------------------------------------------


def copy_models(models_dir, into):
    """Copies <models_dir> to <into>/models and rewrites models.config's base paths to the copy."""
    config_path = os.path.join(models_dir, "models.config")
    if not os.path.isfile(config_path):
        raise CheckFailed("models: %s does not exist (run test_serve_fashion_models with TESSERA_SERVE_MODELS=%s first)"
                          % (config_path, models_dir))
    copy = os.path.join(into, "models")
    shutil.copytree(models_dir, copy, symlinks=False, ignore=shutil.ignore_patterns(".tmp-*"))
    with open(config_path) as f:
        text = f.read()
    paths = {}

    def move(m):
        original = m.group(2).replace("\\'", "'").replace("\\\\", "\\")
        rel = os.path.relpath(original, models_dir)
        require(not rel.startswith(".."), "models.config", "base path %s is outside %s" % (original, models_dir))
        new = os.path.join(copy, rel)
        paths[os.path.basename(original)] = new
        return "%s'%s'" % (m.group(1), new.replace("\\", "\\\\").replace("'", "\\'"))

    text = re.sub(r"(base_path:\s*)'((?:[^'\\]|\\.)*)'", move, text)
    require(set(paths) == {"fashion", "mlp"}, "models.config", "expected base paths .../fashion and .../mlp, found %s"
            % sorted(paths))
    for name, versions in (("fashion", ["1", "2"]), ("mlp", ["1"])):
        present = sorted(n for n in os.listdir(paths[name]) if n.isdigit())
        require(present == versions, "models", "%s holds versions %s, expected %s" % (paths[name], present, versions))
    with open(os.path.join(copy, "models.config"), "w") as f:
        f.write(text)
    return copy


# ---- sections -------------------------------------------------------------------------------


def check_flags(binary, work):
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    require(r.returncode == 0, "--help", "%s, stderr: %s" % (describe_status(r.returncode), one_line(r.stderr)))
    require("usage: tessera-serve" in r.stdout and "--model_config_file" in r.stdout, "--help",
            "no usage text on stdout: %s" % one_line(r.stdout))
    ok("--help", "exit 0 with the usage")

    r = subprocess.run([binary, "--no_such_flag", "1"], capture_output=True, text=True, timeout=30)
    require(r.returncode == 1, "unknown flag", "%s, expected exit status 1" % describe_status(r.returncode))
    require("--no_such_flag" in r.stderr, "unknown flag", "stderr does not name the flag: %s" % one_line(r.stderr))
    ok("unknown flag", "exit 1: " + one_line(r.stderr))

    r = subprocess.run([binary, "--rest_api_port", "0"], capture_output=True, text=True, timeout=30)
    require(r.returncode != 0, "no model", "%s with neither --model_base_path nor --model_config_file"
            % describe_status(r.returncode))
    require(r.stderr.strip(), "no model", "no message on stderr")
    ok("no model", "%s: %s" % (describe_status(r.returncode), one_line(r.stderr)))

    missing_config = os.path.join(work, "no-such.config")
    r = subprocess.run([binary, "--model_config_file", missing_config, "--rest_api_port", "0"], capture_output=True,
                       text=True, timeout=30)
    require(r.returncode != 0, "missing config file", describe_status(r.returncode))
    require(missing_config in r.stderr, "missing config file", "stderr does not name the file: %s" % one_line(r.stderr))
    ok("missing config file", "%s: %s" % (describe_status(r.returncode), one_line(r.stderr)))

    # A base path that does not exist: either the process ends with a non-zero status and a
    # message naming the path, or (TensorFlow Serving's behaviour: "Could not find base path ...
    # for servable ...", logged at every poll) it keeps running but says so. Serving nothing
    # without a word is wrong either way.
    missing_base = os.path.join(work, "no-such-model")
    s = Server(binary, ["--model_name", "ghost", "--model_base_path", missing_base, "--rest_api_port", "0"],
               wait_for_port=False)
    try:
        status = s.wait(timeout=5)
        said = any(missing_base in line for line in s.stdout_lines + s.stderr_lines)
        if status is None:
            s.kill()
            require(said, "missing base path",
                    "the server is still running after 5 s and has not said that %s does not exist (%s)"
                    % (missing_base, s.output()))
            ok("missing base path", "keeps running and says so (as TensorFlow Serving does)")
        else:
            require(status != 0, "missing base path", "exit status 0")
            require(said, "missing base path", "%s without naming %s (%s)" % (describe_status(status), missing_base,
                                                                             s.output()))
            ok("missing base path", "%s: %s" % (describe_status(status), one_line(" ".join(s.stderr_lines))))
    finally:
        s.kill()


def curl(args, body=None):
    """(status, body text) of a curl call."""
    cmd = ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "30", "--write-out", "\n%{http_code}"]
    r = subprocess.run(cmd + args, input=body, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise CheckFailed("curl %s: exit status %d: %s" % (" ".join(args), r.returncode, one_line(r.stderr.decode())))
    text = r.stdout.decode("utf-8", "replace")
    text, _, code = text.rpartition("\n")
    return int(code), text


def curl_json(args, body=None, expect=200):
    status, text = curl(args, body)
    name = "curl " + " ".join(a for a in args if not a.startswith("@"))
    require(status == expect, name, "HTTP %d, expected %d: %s" % (status, expect, one_line(text)))
    try:
        return json.loads(text)
    except ValueError:
        raise CheckFailed("%s: not JSON: %s" % (name, one_line(text)))


def check_rest_curl(server, images):
    if shutil.which("curl") is None:
        print("skip  rest/curl: no curl on PATH (the REST API is still checked through urllib below)", flush=True)
        return
    u = server.url
    post = ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-"]
    rows = curl_json(post + [u + "/v1/models/fashion:predict"], json.dumps({"instances": images.tolist()}).encode())
    require("predictions" in rows, "curl :predict (row form)", "no 'predictions': %s" % one_line(rows))
    p = np.asarray(rows["predictions"], dtype=np.float32)
    check_probabilities(p, len(images), "curl :predict (row form)")
    ok("curl :predict, row form", "{\"instances\": [3 images]} -> predictions %s" % (p.shape,))

    cols = curl_json(post + [u + "/v1/models/fashion:predict"], json.dumps({"inputs": images.tolist()}).encode())
    require("outputs" in cols, "curl :predict (column form)", "no 'outputs': %s" % one_line(cols))
    require(np.array_equal(np.asarray(cols["outputs"], dtype=np.float32), p), "curl :predict (column form)",
            "outputs differ from the row form's predictions")
    ok("curl :predict, column form", "outputs equal the row form's predictions")

    status = curl_json([u + "/v1/models/fashion"])
    mvs = status.get("model_version_status")
    require(isinstance(mvs, list) and [v.get("version") for v in mvs] == ["2", "1"], "curl model status",
            "expected versions 2 and 1 (newest first): %s" % one_line(status))
    for v in mvs:
        require(v.get("state") == "AVAILABLE" and v.get("status", {}).get("error_code") == "OK", "curl model status",
                "version %s is not AVAILABLE/OK: %s" % (v.get("version"), one_line(v)))
    ok("curl model status", "fashion: versions 2, 1 AVAILABLE")

    meta = curl_json([u + "/v1/models/fashion/metadata"])
    try:
        spec = meta["model_spec"]
        sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        images_in = sig["inputs"]["images"]
        probs = sig["outputs"]["probabilities"]
    except (KeyError, TypeError):
        raise CheckFailed("curl metadata: not TensorFlow Serving's GetModelMetadata shape: %s" % one_line(meta))
    require(spec.get("name") == "fashion" and spec.get("version") == "2", "curl metadata", "model_spec %s" % spec)
    require(images_in.get("dtype") == "DT_FLOAT", "curl metadata", "input dtype %s" % images_in.get("dtype"))
    dims = [d.get("size") for d in images_in["tensor_shape"]["dim"]]
    require(dims == ["-1", "1", "28", "28"], "curl metadata", "input dims %s" % dims)
    dims = [d.get("size") for d in probs["tensor_shape"]["dim"]]
    require(dims == ["-1", "10"], "curl metadata", "output dims %s" % dims)
    require(sig.get("method_name") == "tensorflow/serving/predict", "curl metadata", "method_name %s" % sig.get("method_name"))
    ok("curl metadata", "serving_default: images DT_FLOAT [-1, 1, 28, 28] -> probabilities [-1, 10]")

    for args, body, what in ((post + [u + "/v1/models/nope:predict"], json.dumps({"instances": [[0.0]]}).encode(),
                              "POST /v1/models/nope:predict"),
                             ([u + "/v1/models/nope"], None, "GET /v1/models/nope")):
        err = curl_json(args, body, expect=404)
        require(isinstance(err.get("error"), str) and "nope" in err["error"], "curl unknown model",
                "%s: no JSON error naming the model: %s" % (what, one_line(err)))
    ok("curl unknown model", "404 {\"error\": \"%s\"}" % err["error"])

    err = curl_json(post + [u + "/v1/models/fashion:predict"], b'{"instances": [[1, 2, 3]]}', expect=400)
    require(isinstance(err.get("error"), str), "curl bad input", "no JSON error: %s" % one_line(err))
    ok("curl bad input", "400 {\"error\": \"%s\"}" % one_line(err["error"], 80))

    code, text = curl([u + "/monitoring/prometheus/metrics"])
    require(code == 200, "curl metrics", "HTTP %d: %s" % (code, one_line(text)))
    m = re.search(r'^tessera_serve_requests_total\{model="fashion",version="2",code="200"\} (\d+)$', text, re.M)
    require(m and int(m.group(1)) >= 2, "curl metrics",
            "no count of the 200 answers of fashion version 2: %s" % one_line(text, 600))
    # Unknown model names are counted without their name, so that clients cannot grow the metrics.
    require(re.search(r'^tessera_serve_requests_total\{model="",version="",code="404"\} [1-9]', text, re.M),
            "curl metrics", "the 404s for model nope are not counted")
    require('model="nope"' not in text, "curl metrics", "the unknown model's name is a metrics label")
    require(re.search(r'^tessera_serve_loaded_versions\{model="fashion"\} 2$', text, re.M), "curl metrics",
            "tessera_serve_loaded_versions of fashion is not 2")
    require(re.search(r'^tessera_serve_request_latency_seconds_count\{model="fashion"\} [1-9]', text, re.M),
            "curl metrics", "no latency histogram for fashion")
    require("# TYPE tessera_serve_requests_total counter" in text, "curl metrics", "no TYPE line")
    ok("curl metrics", "%s answers 200 from fashion v2, 2 versions loaded" % m.group(1))


def check_triton(server, images, flat):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url="%s:%d" % (HOST, server.port), connection_timeout=30,
                                              network_timeout=30)
    try:
        require(client.is_server_live(), "triton is_server_live", "False")
        require(client.is_server_ready(), "triton is_server_ready", "False")
        require(client.is_model_ready("fashion"), "triton is_model_ready", "fashion: False")
        require(client.is_model_ready("fashion", "1"), "triton is_model_ready", "fashion version 1: False")
        require(client.is_model_ready("fashion", "2"), "triton is_model_ready", "fashion version 2: False")
        require(not client.is_model_ready("fashion", "9"), "triton is_model_ready", "fashion version 9: True")
        require(not client.is_model_ready("nope"), "triton is_model_ready", "model nope: True")
        ok("triton health", "live, ready; fashion, fashion v1 ready; v9 and nope not")

        meta = client.get_server_metadata()
        require(meta.get("name") == "tessera", "triton get_server_metadata", "name: %s" % one_line(meta))
        require("binary_tensor_data" in meta.get("extensions", []), "triton get_server_metadata",
                "extensions lack binary_tensor_data: %s" % one_line(meta))
        ok("triton get_server_metadata", one_line(meta))

        meta = client.get_model_metadata("fashion")
        require(meta.get("name") == "fashion", "triton get_model_metadata", one_line(meta))
        require(meta.get("versions") == ["1", "2"], "triton get_model_metadata", "versions %s" % meta.get("versions"))
        require(meta.get("inputs") == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
                "triton get_model_metadata", "inputs %s" % meta.get("inputs"))
        require(meta.get("outputs") == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
                "triton get_model_metadata", "outputs %s" % meta.get("outputs"))
        meta1 = client.get_model_metadata("fashion", "1")
        require(meta1.get("inputs") == meta["inputs"], "triton get_model_metadata", "version 1: %s" % one_line(meta1))
        try:
            client.get_model_metadata("nope")
            raise CheckFailed("triton get_model_metadata: model nope answered")
        except InferenceServerException:
            pass
        ok("triton get_model_metadata", "fashion: versions 1, 2; images FP32 [-1, 1, 28, 28] -> probabilities FP32 [-1, 10]")

        rest = {v: predict(server, "/v1/models/fashion/versions/%s:predict" % v, images) for v in ("1", "2")}
        for v in ("1", "2"):
            check_probabilities(rest[v], len(images), "REST :predict version " + v)

        def infer(binary_in, outputs, model="fashion", version="", x=images, request_id=""):
            inp = httpclient.InferInput("images", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary_in)
            return client.infer(model, [inp], model_version=version, outputs=outputs, request_id=request_id)

        def wanted(binary):
            return [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]

        # (what, binary input, requested outputs, binary output expected). Without outputs named,
        # the client asks for every output in binary (parameters.binary_data_output).
        cases = [
            ("binary in, no outputs named", True, None, True),
            ("binary in, binary out", True, wanted(True), True),
            ("binary in, JSON out", True, wanted(False), False),
            ("JSON in, JSON out", False, wanted(False), False),
            ("JSON in, binary out", False, wanted(True), True),
            ("JSON in, no outputs named", False, None, True),
        ]
        for what, binary_in, outputs, binary_out in cases:
            name = "triton infer, " + what
            result = infer(binary_in, outputs)
            response = result.get_response()
            require(response.get("model_name") == "fashion" and response.get("model_version") == "2", name,
                    "model_name/model_version %s/%s, expected fashion/2"
                    % (response.get("model_name"), response.get("model_version")))
            out = response["outputs"][0]
            require(("binary_data_size" in out.get("parameters", {})) == bool(binary_out), name,
                    "answered %s, asked for %s: %s" % ("binary" if "binary_data_size" in out.get("parameters", {})
                                                       else "JSON", "binary" if binary_out else "JSON", one_line(out)))
            got = result.as_numpy("probabilities")
            require(got is not None, name, "no output 'probabilities': %s" % one_line(response))
            check_probabilities(got, len(images), name)
            diff = check_equal(got, rest["2"], name)
            ok(name, "equals the REST answer (max difference %g)" % diff)

        result = infer(True, None, version="1", request_id="check-17")
        response = result.get_response()
        require(response.get("model_version") == "1", "triton infer version 1", "model_version %s" % response.get("model_version"))
        require(response.get("id") == "check-17", "triton infer version 1", "id %s, sent check-17" % response.get("id"))
        diff = check_equal(result.as_numpy("probabilities"), rest["1"], "triton infer version 1")
        require(float(np.max(np.abs(rest["1"] - rest["2"]))) > 1e-4, "triton infer version 1",
                "versions 1 and 2 answer the same: the check cannot tell them apart")
        ok("triton infer, model_version=\"1\"", "equals REST versions/1:predict (max difference %g), request id echoed" % diff)

        for what, call in (
            ("unknown model", lambda: infer(True, None, model="nope")),
            ("unknown version", lambda: infer(True, None, version="9")),
            ("wrong shape", lambda: infer(True, None, x=flat)),
        ):
            try:
                call()
                raise CheckFailed("triton infer, %s: no InferenceServerException" % what)
            except InferenceServerException as e:
                ok("triton infer, " + what, "InferenceServerException: %s" % one_line(e.message(), 120))

        rest_mlp = predict(server, "/v1/models/mlp:predict", flat)
        check_probabilities(rest_mlp, len(flat), "REST mlp :predict")
        for binary in (True, False):
            name = "triton infer mlp (%s)" % ("binary" if binary else "JSON")
            inp = httpclient.InferInput("images", list(flat.shape), "FP32")
            inp.set_data_from_numpy(flat, binary_data=binary)
            result = client.infer("mlp", [inp], outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=binary)])
            require(result.get_response().get("model_version") == "1", name, one_line(result.get_response()))
            diff = check_equal(result.as_numpy("probabilities"), rest_mlp, name)
            ok(name, "images [3, 784] -> equals REST mlp:predict (max difference %g)" % diff)
    finally:
        client.close()


def check_reload(server, models, images):
    u = server.url
    canary = http_json("GET", u + "/v1/models/fashion/labels/canary")
    require([v.get("version") for v in canary.get("model_version_status", [])] == ["2"], "labels/canary status",
            "expected version 2 only: %s" % one_line(canary))
    stable = http_json("GET", u + "/v1/models/fashion/labels/stable")
    require([v.get("version") for v in stable.get("model_version_status", [])] == ["1"], "labels/stable status",
            "expected version 1 only: %s" % one_line(stable))
    p_canary = predict(server, "/v1/models/fashion/labels/canary:predict", images)
    p_stable = predict(server, "/v1/models/fashion/labels/stable:predict", images)
    require(np.array_equal(p_canary, predict(server, "/v1/models/fashion/versions/2:predict", images)), "labels/canary",
            "does not answer what version 2 answers")
    require(np.array_equal(p_stable, predict(server, "/v1/models/fashion/versions/1:predict", images)), "labels/stable",
            "does not answer what version 1 answers")
    require(float(np.max(np.abs(p_canary - p_stable))) > 1e-4, "labels", "canary and stable answer the same")
    err = http_json("POST", u + "/v1/models/fashion/labels/beta:predict", {"instances": images.tolist()}, expect=404)
    require("beta" in err.get("error", ""), "labels/beta", one_line(err))
    ok("labels", "canary answers version 2's weights, stable version 1's; they differ; an unknown label is 404")

    # A new version of "mlp", appearing the way export_model makes it appear: whole, by a rename.
    base = os.path.join(models, "mlp")
    tmp = os.path.join(base, ".tmp-x")
    shutil.copytree(os.path.join(base, "1"), tmp)
    os.rename(tmp, os.path.join(base, "3"))
    start = time.monotonic()
    states = {}
    while time.monotonic() - start < 15:
        j = http_json("GET", u + "/v1/models/mlp")
        states = {v["version"]: v["state"] for v in j.get("model_version_status", [])}
        if states.get("3") == "AVAILABLE" and states.get("1") == "END":
            break
        time.sleep(0.1)
    require(states.get("3") == "AVAILABLE" and states.get("1") == "END", "hot reload",
            "after 15 s /v1/models/mlp reports %s; expected 3 AVAILABLE and 1 END" % states)
    took = time.monotonic() - start
    rest = predict(server, "/v1/models/mlp:predict", np.zeros((1, 784), np.float32))
    check_probabilities(rest, 1, "hot reload")
    meta = http_json("GET", u + "/v1/models/mlp/metadata")
    require(meta["model_spec"]["version"] == "3", "hot reload", "metadata names version %s" % meta["model_spec"]["version"])
    status, raw, _ = http("POST", u + "/v1/models/mlp/versions/1:predict", {"instances": [[0.0] * 784]})
    require(status == 404, "hot reload", "version 1 still answers (HTTP %d)" % status)
    ok("hot reload", "mlp version 3 AVAILABLE and version 1 END after %.1f s; version 1 answers 404" % took)


def check_port_in_use(binary, server, config):
    # A second server on the first one's port must fail to bind (exit 1, naming the port), not
    # share the port with it: with SO_REUSEPORT the kernel would split the connections between
    # the two processes, each answering from its own models.
    s = Server(binary, ["--model_config_file", config, "--rest_api_port", str(server.port),
                        "--file_system_poll_wait_seconds", "0"], wait_for_port=False)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            status = s.wait(timeout=0.1)
            if status is not None or any("listening on" in line for line in s.stdout_lines):
                break
        if status is None:
            s.kill()
            raise CheckFailed("port in use: a second server on port %d, which the first one holds, did not fail to bind "
                              "(%s)" % (server.port, s.output()))
        require(status == 1, "port in use", "%s, expected exit status 1 (%s)" % (describe_status(status), s.output()))
        stderr = " ".join(s.stderr_lines)
        require(str(server.port) in stderr, "port in use", "stderr does not name the port: %s" % one_line(stderr))
        ok("port in use", "exit 1: " + one_line(stderr))
    finally:
        s.kill()


def check_sigterm(binary, config, images):
    s = Server(binary, ["--model_config_file", config, "--rest_api_port", "0", "--file_system_poll_wait_seconds", "1"])
    try:
        body = json.dumps({"instances": images[:1].tolist()}).encode()
        url = s.url + "/v1/models/fashion:predict"
        lock = threading.Lock()
        signalled = threading.Event()
        stop = threading.Event()
        counts = {"200": 0}
        after = {}  # kinds of connection errors after the signal (refused, reset: no HTTP answer)
        bad = []  # answers other than 200, and failures before the signal

        def client(k):
            while not stop.is_set():
                try:
                    status, raw, _ = http("POST", url, body, timeout=30)
                except Exception as e:  # no HTTP answer: connection refused or reset
                    if signalled.is_set():
                        kind = type(getattr(e, "reason", e)).__name__
                        with lock:
                            after[kind] = after.get(kind, 0) + 1
                        return
                    with lock:
                        bad.append("client %d, before SIGTERM: %s" % (k, one_line(e, 120)))
                    return
                with lock:
                    if status == 200:
                        counts["200"] += 1
                    else:
                        bad.append("client %d: HTTP %d: %s" % (k, status, one_line(raw.decode("utf-8", "replace"), 120)))

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if counts["200"] >= 40 or bad:
                    break
            time.sleep(0.01)
        with lock:
            before = counts["200"]
        require(before >= 40 and not bad, "sigterm", "the load did not get going: %d answers of 200, %s" % (before, bad))
        signalled.set()
        sent = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        status = s.wait(timeout=10)
        took = time.monotonic() - sent
        stop.set()
        for t in threads:
            t.join(timeout=35)
        if status is None:
            raise CheckFailed("sigterm: the server still runs 10 s after SIGTERM (%s)" % s.output())
        require(status == 0, "sigterm",
                "%s after SIGTERM, expected exit status 0 after finishing the requests in flight (%s)"
                % (describe_status(status), s.output()))
        require(any(line.endswith("stopped") for line in s.stdout_lines), "sigterm",
                "'stopped' not printed (%s)" % s.output())
        require(not bad, "sigterm", "%d requests got no 200: %s" % (len(bad), "; ".join(bad[:5])))
        ok("sigterm", "exit 0 in %.2f s, 'stopped' printed; %d answers, all 200 (%d before the signal); then no "
           "connection: %s" % (took, counts["200"], before, ", ".join("%s x%d" % kv for kv in sorted(after.items()))))
    finally:
        s.kill()


def main(argv):
    if len(argv) != 3:
        print("usage: serve_check.py <tessera-serve> <models_dir>", file=sys.stderr)
        return 2
    binary, models_dir = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    if not os.access(binary, os.X_OK):
        print("FAIL  %s is not an executable (build the tessera-serve target)" % binary)
        return 1
    rng = np.random.default_rng(7)
    images = rng.random((3, 1, 28, 28), dtype=np.float32)  # pixels in [0, 1)
    flat = rng.random((3, 784), dtype=np.float32)

    failures = []

    def section(name, fn, *args):
        try:
            fn(*args)
        except CheckFailed as e:
            failures.append(name)
            print("FAIL  %s" % e, flush=True)
        except Exception as e:  # a client library's error: still this section's failure
            failures.append(name)
            print("FAIL  %s: %s: %s" % (name, type(e).__name__, one_line(e)), flush=True)

    work = tempfile.mkdtemp(prefix="tessera_serve_check_")
    server = None
    try:
        section("flags", check_flags, binary, work)
        try:
            models = copy_models(models_dir, work)
        except CheckFailed as e:
            print("FAIL  %s" % e)
            return 1
        config = os.path.join(models, "models.config")
        try:
            server = Server(binary, ["--model_config_file", config, "--rest_api_port", "0",
                                     "--file_system_poll_wait_seconds", "1"])
            ok("server start", "%s, %s" % (server.url, one_line(" | ".join(server.stdout_lines[:-1]))))
        except CheckFailed as e:
            print("FAIL  %s" % e)
            return 1
        section("rest/curl", check_rest_curl, server, images)
        section("triton", check_triton, server, images, flat)
        section("process", check_port_in_use, binary, server, config)
        section("reload", check_reload, server, models, images)
        if server.proc.poll() is not None:
            failures.append("server")
            print("FAIL  server: ended during the checks: %s (%s)" % (describe_status(server.proc.returncode),
                                                                      server.output()))
        section("sigterm", check_sigterm, binary, config, images)
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("serve_check: FAILED (%s)" % ", ".join(failures))
        return 1
    print("serve_check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
