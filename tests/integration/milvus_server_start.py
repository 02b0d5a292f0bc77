"""Start the embedded Milvus 2.3.5 server (`pip install milvus==2.3.5`) on 127.0.0.1:PORT.

Run by tests/integration/test_milvus_server.py with the interpreter that has the `milvus`
package, inside a network namespace (`make test-milvus-2.3`): the server binds every
interface, so it must never run in the open.
"""

import signal
import sys
import threading

from milvus import default_server

default_server.set_base_dir(sys.argv[1])
default_server.listen_port = int(sys.argv[2])
default_server.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())  # stop the server process too
print("READY", flush=True)
stop.wait()
default_server.stop()
