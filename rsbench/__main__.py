"""``python -m rsbench [task=...] [dataset=...] [backbone=...] [key=value ...] [-m]``.

With no arguments it runs the demo (``experiment=demo``): a one-minute run on generated sample
data in EuroSAT's official layout.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from rsbench.config import CONF_DIR, register_resolvers

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from rsbench.app import run

    run(cfg)


def main() -> None:
    if len(sys.argv) == 1:
        print("rsbench: no arguments, so running the demo (experiment=demo) on generated sample data.\n"
              "         Real runs: python -m rsbench task=cls dataset=eurosat backbone=vitb_rvsa   (see README.md)")
        sys.argv.append("experiment=demo")
    _hydra_main()
    from rsbench.app import FAILURES

    if FAILURES:
        print(f"\n{len(FAILURES)} run(s) did not finish:", file=sys.stderr)
        for label, err in FAILURES:
            print(f"  - {label}: {err.splitlines()[0] if err else ''}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
