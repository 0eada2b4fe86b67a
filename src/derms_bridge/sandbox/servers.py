"""Servers on loopback for the sandbox and tests, started and stopped alike; an ASGI app
served by uvicorn in a background thread."""

import socket
import threading
import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class LocalServer(ABC):
    """A server on loopback that the sandbox and the tests start and stop, by hand or as a
    `with` block."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ServerThread(LocalServer):
    """One uvicorn server on 127.0.0.1 with its own event loop in a daemon thread."""

    def __init__(
        self,
        app: ASGIApp,
        port: int = 0,
        name: str = "asgi-server",
        startup_timeout: float = 10.0,
        graceful_shutdown_timeout: int = 5,
    ) -> None:
        self.name = name
        self._requested_port = port
        self._startup_timeout = startup_timeout
        config = uvicorn.Config(
            app,
            # Left to the process: uvicorn's own dictConfig would replace the handlers of a hub
            # serving in the same process, since uvicorn's loggers are shared by name.
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=graceful_shutdown_timeout,
        )
        self._server = uvicorn.Server(config)
        self._port: int | None = None
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} has no port until it is started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Starts serving and returns once the server accepts connections.

        A server started again after ``stop()`` comes back on the same port.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already started")
        # Binding here, not in uvicorn, is what lets port 0 work and tells us the real port.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((LOOPBACK, self._port or self._requested_port))
        except OSError:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        self._socket = listener
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name=self.name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._release()
                raise RuntimeError(f"{self.name} failed to start; see the uvicorn log")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} did not start within {self._startup_timeout}s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stops accepting, lets running requests finish, and waits for the thread to end."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join()
        self._release()

    def _release(self) -> None:
        self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        # uvicorn.Server keeps these flags; cleared so that the same server can start again.
        self._server.should_exit = False
        self._server.started = False
