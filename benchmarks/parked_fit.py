"""nntrain.api.fit in a worker thread, parked by its hooks between epochs: how the benchmarks time nntrain.

Shared by benchmarks/epoch.py and benchmarks/conv.py, which load it by path (they take their
own folder off sys.path; see benchmarks/machine.py). The fit runs its ordinary epoch loop; the
on_start and on_epoch hooks hand control back to the benchmark, which runs the other
contenders in between, so an epoch's time is from the hook's release to the next on_epoch:
shuffling, batches, metrics, the metrics.csv row and the checkpoint writes.

    fit = ParkedFit(config, runs_root)   # a validated nntrain config
    fit.begin()                          # runs up to the first epoch; fit.exp is the Experiment
    seconds = fit.epoch()                # one more epoch, timed
    fit.end(stop=False)                  # let it finish (stop=True: stop it after this epoch)
"""

from __future__ import annotations

import signal
import threading
import time


class ParkedFit:
    def __init__(self, config, runs_root):
        from nntrain.train.trainer import Hooks

        self.config, self.runs_root = config, runs_root
        self._go, self._ready = threading.Semaphore(0), threading.Semaphore(0)
        self.rows, self.error, self.summary, self.done = [], None, None, False
        self.run = self.exp = None
        self._t0 = self._last = None
        self.hooks = Hooks(on_start=self._on_start, on_epoch=self._on_epoch)
        self._thread = threading.Thread(target=self._main, name="nntrain-fit", daemon=True)

    def begin(self) -> None:
        """Run the fit up to its first epoch (data loaded, network built, the initial checkpoint written)."""
        self._thread.start()
        self._wait()

    def epoch(self) -> float:
        """Seconds of the next epoch."""
        self._go.release()
        self._wait()
        if self.done:
            raise RuntimeError("nntrain finished before the benchmark asked for its last epoch")
        return self._last

    def end(self, stop: bool = False) -> None:
        """Let the fit end after the epoch it is parked at: its remaining epochs, or with `stop` as a
        Ctrl-C after this epoch would (the summary then says "interrupted")."""
        if stop:
            self.hooks.stop.signal = signal.SIGTERM
        self._go.release()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"nntrain fit failed: {self.error!r}") from self.error

    def _main(self):
        from nntrain import api

        try:
            self.summary = api.fit(self.config, runs_root=self.runs_root, hooks=self.hooks)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
        finally:
            self.done = True
            self._ready.release()

    def _on_start(self, run, exp, epochs_done):
        self.run, self.exp = run, exp
        self._park()

    def _on_epoch(self, row):
        self._last = time.perf_counter() - self._t0
        self.rows.append(row)
        self._park()

    def _park(self):
        self._ready.release()
        self._go.acquire()
        self._t0 = time.perf_counter()

    def _wait(self):
        self._ready.acquire()
        if self.error is not None:
            raise RuntimeError(f"nntrain fit failed: {self.error!r}") from self.error
