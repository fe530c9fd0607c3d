import argparse

from rsbench.data import DATASETS
from rsbench.data.samples import write_sample

p = argparse.ArgumentParser(prog="python -m rsbench.data.samples", description="write a tiny dataset in its official layout")
p.add_argument("name", choices=DATASETS.names())
p.add_argument("root")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
print(write_sample(a.name, a.root, seed=a.seed))
