"""Record real ipyparallel wire traffic into test/fixtures/ipp<major>-frames.json.

Runs the upstream `ipcontroller` of this venv in a throw-away profile, talks to its
registration/query socket with jupyter_client's Session (exactly what ipyparallel.Client uses),
listens to its heartbeat PUB, and separately points a real `ipengine` at a plain ROUTER socket to
capture the engine's registration_request. Frames are stored base64-encoded together with the
key, so tests can check framing and HMAC signatures against them.

usage: python record_fixtures.py OUT.json
"""
import base64, json, os, shutil, signal, subprocess, sys, tempfile, time

import zmq
from jupyter_client.session import Session
import ipyparallel

def b64(frames):
    return [base64.b64encode(bytes(f)).decode("ascii") for f in frames]

def main(out):
    tmp = tempfile.mkdtemp(prefix="ipp-fixtures-")
    env = dict(os.environ, IPYTHONDIR=tmp)
    bindir = os.path.dirname(sys.executable)
    ctrl = subprocess.Popen([os.path.join(bindir, "ipcontroller"), "--ip=127.0.0.1", "--log-level=WARN"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rec = {"ipyparallel": ipyparallel.__version__, "exchanges": {}}
    ctx = zmq.Context()
    try:
        sec = os.path.join(tmp, "profile_default", "security")
        cj, ej = os.path.join(sec, "ipcontroller-client.json"), os.path.join(sec, "ipcontroller-engine.json")
        deadline = time.time() + 60
        while not (os.path.exists(cj) and os.path.exists(ej)):
            if time.time() > deadline:
                raise SystemExit("ipcontroller wrote no connection files")
            time.sleep(0.2)
        time.sleep(1.0)
        client_info = json.load(open(cj)); engine_info = json.load(open(ej))
        rec["client_json"] = client_info; rec["engine_json"] = engine_info
        rec["client_json_mode"] = oct(os.stat(cj).st_mode & 0o777)
        key = client_info["key"].encode()
        rec["key"] = client_info["key"]
        session = Session(key=key, signature_scheme=client_info["signature_scheme"], packer="json", unpacker="json")
        url = lambda port: f"{client_info['interface']}:{port}"

        q = ctx.socket(zmq.DEALER); q.connect(url(client_info["registration"]))
        for mtype, content in [("connection_request", {}), ("queue_request", {"targets": None, "verbose": False}),
                               ("history_request", {}), ("bogus_request", {})]:
            sent = session.send(q, mtype, content=content)
            frames = session.serialize(sent)
            if not q.poll(10000):
                raise SystemExit(f"no reply to {mtype}")
            reply = q.recv_multipart()
            rec["exchanges"][mtype] = {"request": b64(frames), "reply": b64(reply)}

        sub = ctx.socket(zmq.SUB); sub.setsockopt(zmq.SUBSCRIBE, b""); sub.connect(f"{engine_info['interface']}:{engine_info['hb_ping']}")
        if not sub.poll(10000):
            raise SystemExit("no heartbeat ping")
        rec["hb_ping"] = b64(sub.recv_multipart())

        # a real engine's registration_request, captured on a plain ROUTER
        router = ctx.socket(zmq.ROUTER); port = router.bind_to_random_port("tcp://127.0.0.1")
        fake = dict(engine_info, registration=port)
        eng = subprocess.Popen([os.path.join(bindir, "ipengine"), "--log-level=WARN"],
                               env=dict(env, IPP_CONNECTION_INFO=json.dumps(fake)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            if not router.poll(30000):
                raise SystemExit("engine sent no registration_request")
            rec["engine_registration_request"] = b64(router.recv_multipart())
        finally:
            os.killpg(eng.pid, signal.SIGKILL); eng.wait()
    finally:
        os.killpg(ctrl.pid, signal.SIGKILL); ctrl.wait()
        ctx.destroy(linger=0)
        shutil.rmtree(tmp, ignore_errors=True)
    with open(out, "w") as f:
        json.dump(rec, f, indent=1)
    print(json.dumps({"ok": True, "out": out}))

if __name__ == "__main__":
    main(sys.argv[1])
