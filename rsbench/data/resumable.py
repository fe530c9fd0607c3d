"""A training loader that a checkpoint taken mid-epoch resumes where it stopped.

Lightning saves the state of a train loader that has ``state_dict`` / ``load_state_dict`` in every checkpoint
(``loops.fit_loop.state_dict.combined_loader``) and loads it before the loader's first ``iter`` on resume; for
any other loader a resume from a step checkpoint starts the epoch's data over (another order, samples seen twice
or not at all). :class:`ResumableBatchSampler` is what the loader delegates that state to:

* **Order.** Each epoch's order is drawn exactly as ``DataLoader(shuffle=True)`` draws it (one int64 from torch's
  global generator when the epoch's iteration starts, then ``randperm`` on a generator seeded with it), so an
  uninterrupted run is batch for batch the run it was with ``RandomSampler``. The state holds the epoch's seed
  and the batches trained; the resumed epoch draws the same order and skips those batches (indices only: nothing
  is read twice).
* **Randomness of the augmentations** (``data.num_workers=0``, where they draw from the main process's
  generators). The state keeps the generators' state of the checkpoint, and the resumed iteration draws its
  first batch under it (as the uninterrupted run drew that batch right after the checkpoint; this undoes the
  draw of the new iterator's own seed). Where a loader reads a batch ahead (Lightning's prefetching, for a
  loader without a length), the next batch was already drawn when the checkpoint was written: the state keeps
  the generators' state from just before it, the resumed iteration draws that batch under it and then puts back
  the checkpoint's. Either way the resumed run draws every number as the run that was not interrupted.
* **With DataLoader workers** the augmentations draw from the workers' generators, seeded when the workers start
  (and kept for the whole run: persistent workers); a resumed run starts new workers, so its augmentations differ
  from that point on (the order and the samples are still the same). Under DDP Lightning's own
  ``DistributedSampler`` is used and a mid-epoch resume starts the epoch over (Lightning warns).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Shuffled batches of ``range(n)`` as ``DataLoader(shuffle=True, batch_size, drop_last)`` makes them, with a
    state to resume an epoch mid-way (module docstring). ``track_rng``: keep the generators' state before each
    batch (needed when the batches are augmented in this process, ``num_workers=0``)."""

    def __init__(self, n: int, batch_size: int, drop_last: bool = False, track_rng: bool = True) -> None:
        self.n, self.batch_size, self.drop_last, self.track_rng = int(n), int(batch_size), bool(drop_last), track_rng
        self.seed: int | None = None  # the order of the epoch being iterated
        self._before: dict[int, dict[str, Any]] = {}  # batch index → generators' state just before it was drawn
        self._resume: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        from rsbench.callbacks import rng_state, set_rng_state

        resume, self._resume = self._resume, None
        if resume is None:
            seed, start = int(torch.empty((), dtype=torch.int64).random_().item()), 0  # as RandomSampler draws it
        else:
            seed, start = int(resume["seed"]), int(resume["batches_done"])
        self.seed, self._before = seed, {}
        g = torch.Generator()
        g.manual_seed(seed)
        order = torch.randperm(self.n, generator=g).tolist()
        for j in range(start, len(self)):
            batch = order[j * self.batch_size:(j + 1) * self.batch_size]
            swapped = resume is not None and j == start and resume.get("rng_pending") is not None and self.track_rng
            if swapped:
                set_rng_state(resume["rng_pending"])  # the state this batch was augmented under
            elif resume is not None and j == start and resume.get("rng_saved") is not None and self.track_rng:
                # not drawn ahead: it was augmented right after the checkpoint, under its state (undoes the
                # draws of the new iterator's own seed)
                set_rng_state(resume["rng_saved"])
            if not swapped and self.track_rng:
                self._before = {k: v for k, v in self._before.items() if k >= j - 1}
                self._before[j] = rng_state()
            yield batch
            if swapped:
                set_rng_state(resume["rng_saved"])  # back to the checkpoint's state, where the run goes on

    def state_dict(self, batches_done: int) -> dict[str, Any]:
        from rsbench.callbacks import rng_state

        return {"seed": self.seed, "batches_done": int(batches_done), "num_batches": len(self),
                "rng_pending": self._before.get(int(batches_done)) if self.track_rng else None,
                "rng_saved": rng_state() if self.track_rng else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the epoch of ``state`` on the next iteration when it stopped mid-way; an epoch-end state starts
        the next epoch as usual (its order drawn from the restored generators)."""
        done, total = int(state.get("batches_done") or 0), int(state.get("num_batches") or 0)
        ok = state.get("seed") is not None and 0 < done < total == len(self)
        self._resume = dict(state) if ok else None


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableBatchSampler` whose state Lightning checkpoints; ``progress`` gives
    the batches of the current epoch that training has finished (the trainer's, not the loader's, which runs
    ahead)."""

    def __init__(self, *args: Any, progress: Callable[[], int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._progress = progress

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict(self._progress() if self._progress is not None else 0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)
