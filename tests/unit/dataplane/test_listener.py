"""The agent's listener survives running out of file descriptors (EMFILE) and keeps accepting."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import resource, socket, threading, time
    from dataplane.agent import Listener
    from dataplane.config import Endpoint
    from dataplane.workers import Workers

    probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
    served = []
    listener = Listener("t", Endpoint(host="127.0.0.1", port=port), lambda c: (served.append(1), c.close()), Workers("t"))
    listener.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hold = []
    try:
        while True:
            hold.append(socket.socket())  # use up every descriptor
    except OSError:
        pass
    client = hold.pop()  # one free descriptor for the client; the accepted one cannot be made
    client.connect(("127.0.0.1", port))
    time.sleep(0.3)
    for sock in hold:
        sock.close()
    time.sleep(0.3)
    assert served == [1], served  # accepted once descriptors came back
    again = socket.create_connection(("127.0.0.1", port), timeout=2)
    time.sleep(0.2)
    assert served == [1, 1], served
    listener.stop()
    print("ok")
''')


def test_listener_rides_out_emfile() -> None:
    done = subprocess.run([sys.executable, "-c", "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n" + SCRIPT],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "listener.accept_failed" in done.stderr  # the EMFILE path was taken
    assert done.stdout.strip() == "ok"
