"""The dataset loaders, one module each; every module here is imported, so its classes register.

Add a dataset by adding a module (a class deriving from a family base in :mod:`rsbench.data`,
decorated ``@DATASETS.register("<name>")``, with its ``write_sample``) and ``conf/dataset/<name>.yaml``.
"""

from rsbench.registry import import_submodules

MODULES = import_submodules(__name__)
