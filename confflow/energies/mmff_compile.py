"""Compiled MMFF kernels: eager fallback on failure, and compilation in a background thread.

:class:`WithFallback` calls a ``torch.compile``-d function and, when compilation fails,
warns once and keeps to the eager function. :class:`SharedKernel` is one compiled function
for a whole process that a background thread prepares for one input signature at a time (a
molecule's term counts, dtype and device), so that the caller goes on meanwhile (e.g. with
MD) and every later call with that signature finds it compiled.

Both compile with automatic dynamic shapes: the first molecule compiles for its own term
counts, the next one once more with symbolic counts, and later molecules reuse that kernel.
Static shapes compiled every molecule anew, and after torch's recompilation limit (8 per
function) a long-lived process silently ran the dense kernels uncompiled.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Any

import torch

__all__ = ["SharedKernel", "WithFallback"]


class WithFallback:
    """Calls a compiled function; on its first failure warns and uses the eager one for good.

    Args:
        fn: the eager function.
        compile: compile it (``False``: always eager).
    """

    def __init__(self, fn: Callable[..., Any], compile: bool) -> None:
        self.eager = fn
        self.current = torch.compile(fn) if compile else fn

    @property
    def compiled(self) -> bool:
        """Calls go through the compiled function (no failure so far)."""
        return self.current is not self.eager

    def __call__(self, *args: Any) -> Any:
        """The function's result for ``args``, compiled unless compilation has failed."""
        if not self.compiled:
            return self.eager(*args)
        try:
            return self.current(*args)
        except Exception as exc:  # any compiler failure falls back to eager
            warnings.warn(
                f"MMFFEnergy: torch.compile failed ({type(exc).__name__}: {exc}); "
                "falling back to eager evaluation",
                RuntimeWarning,
                stacklevel=2,
            )
            self.current = self.eager
            return self.eager(*args)


class SharedKernel:
    """One compiled function for the process, made ready per signature in the background.

    Args:
        fn: the eager function.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._kernel: WithFallback | None = None  # torch.compile imports seconds of modules
        self._ready: set[Hashable] = set()

    @property
    def kernel(self) -> WithFallback:
        """The compiled function (created on first use)."""
        if self._kernel is None:
            self._kernel = WithFallback(self._fn, compile=True)
        return self._kernel

    def serves(self, signature: Hashable) -> bool:
        """A background compilation has made the kernel ready for ``signature``."""
        return signature in self._ready and self.kernel.compiled

    def prepare(self, signature: Hashable, calls: Sequence[tuple]) -> Future[bool]:
        """Compiles for ``signature`` in a daemon thread by calling the kernel with ``calls``.

        Args:
            signature: what the compiled kernel is specific to (shapes, dtype, device).
            calls: argument tuples like those of the real calls (their results are dropped);
                run without autograd, as inside an autograd function's forward.

        Returns:
            A future that holds whether the kernel serves ``signature`` once the thread is
            done (``False`` after a failed compilation); wait for it before the process exits.
        """
        done: Future[bool] = Future()

        def compile_now() -> None:
            try:
                if signature not in self._ready:
                    with torch.no_grad():
                        for args in calls:
                            self.kernel(*args)
                    if self.kernel.compiled:
                        self._ready.add(signature)
                done.set_result(self.serves(signature))
            except BaseException as exc:  # handed to whoever waits, not lost in the thread
                done.set_exception(exc)

        threading.Thread(target=compile_now, name="compile", daemon=True).start()
        return done
