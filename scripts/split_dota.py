"""Cut DOTA v1.0/v2.0 (or FAIR1M-2.0) images into patches as MMRotate's ``tools/data/dota/split/img_split.py``.

    python scripts/split_dota.py --src data/DOTA --out data/split_ss_dota --preset ss   # DOTA-v2.0 (MTP: ss)
    python scripts/split_dota.py --src data/DOTA --out data/split_ms_dota --preset ms   # DOTA-v1.0 (MTP: ms)
    python scripts/split_dota.py --dataset fair1m --src data/FAIR1M --out data/split_fair1m

Writes ``<out>/trainval/{images,annfiles}`` and ``<out>/test/images`` (what the ``dota10``/``dota20``/
``fair1m`` configs read with ``dataset.root=<out>``). The rules: :mod:`rsbench.data.dota_split`.
"""

from __future__ import annotations

import sys

from rsbench.data.dota_split import main
from rsbench.errors import RsbenchError

if __name__ == "__main__":
    try:
        main()
    except RsbenchError as e:
        sys.exit(f"error: {e}")
