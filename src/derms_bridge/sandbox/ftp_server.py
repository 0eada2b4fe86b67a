"""An FTP server on loopback (pyftpdlib), plain or explicit FTPS, for the sandbox and tests."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from derms_bridge.sandbox.servers import LOOPBACK, LocalServer

#: Every right but SITE CHMOD: list, read, write, rename, delete, make folders.
ALL_BUT_CHMOD = "elradfmwT"


class FtpServer(LocalServer):
    """One user whose home is `root`; `tls_cert` (certificate and key in one PEM file)
    turns on explicit FTPS and makes it required on both channels; `data_handler` replaces
    pyftpdlib's data channel, e.g. with one that breaks off mid-file (tests)."""

    def __init__(
        self,
        root: Path,
        username: str,
        password: str,
        *,
        port: int = 0,
        tls_cert: Path | None = None,
        data_handler: type[DTPHandler] | None = None,
    ) -> None:
        self.root = root
        self.username = username
        self._password = password
        self._requested_port = port
        self._tls_cert = tls_cert
        self._data_handler = data_handler
        self._server: ThreadedFTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the FTP server has no port until it is started")
        port: int = self._server.address[1]
        return port

    def start(self) -> None:
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.username, self._password, str(self.root), perm=ALL_BUT_CHMOD)
        # pyftpdlib configures handlers through class attributes: a subclass per server
        # keeps two servers in one process (plain and FTPS in the tests) apart.
        handler: type[FTPHandler]
        if self._tls_cert is None:
            handler = type("SandboxFtpHandler", (FTPHandler,), {})
        else:
            handler = type(
                "SandboxFtpsHandler",
                (TLS_FTPHandler,),
                {
                    "certfile": str(self._tls_cert),
                    "tls_control_required": True,
                    "tls_data_required": True,
                },
            )
        handler.authorizer = authorizer
        if self._data_handler is not None:
            handler.dtp_handler = self._data_handler
            # sendfile() would hand the file to the kernel, past the data handler's send().
            handler.use_sendfile = False
        handler.banner = "derms-bridge sandbox FTP"
        handler.auth_failed_timeout = 0.5
        # A handler of its own keeps pyftpdlib from setting up logging for the whole process.
        ftp_log = logging.getLogger("pyftpdlib")
        ftp_log.addHandler(logging.NullHandler())
        ftp_log.setLevel(logging.WARNING)
        # pyftpdlib keeps a loop per process and, in ThreadedFTPServer, the event that tells
        # connection threads to end; stopping one server would end every other server's
        # connections too (a test's server beside the session's). Each server has its own.
        server_class = type(
            "SandboxThreadedFTPServer",
            (ThreadedFTPServer,),
            {"_exit": threading.Event(), "_lock": threading.Lock()},
        )
        self._server = server_class((LOOPBACK, self._requested_port), handler, ioloop=IOLoop())
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="ftp-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            self._server.serve_forever(timeout=0.1, blocking=False, handle_exit=False)
        self._server.close_all()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        self._server = None
