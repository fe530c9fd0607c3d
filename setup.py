"""The package layout, the one part of the build that pyproject.toml cannot state.

``conf/`` stays at the top of the repository (Hydra's config tree, where users look for it) and is
shipped inside the wheel as the package ``rsbench._conf``: setuptools' ``package_dir`` maps that name
to the folder, so nothing is copied in git. ``rsbench.config.CONF_DIR`` finds it in either place.
Everything else (metadata, dependencies, entry points) is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

CONF = "rsbench._conf"
NO_CACHE = ["*__pycache__*"]

setup(
    packages=[
        *find_namespace_packages(include=["rsbench", "rsbench.*"], exclude=NO_CACHE),
        CONF,
        *(f"{CONF}.{group}" for group in find_namespace_packages("conf", exclude=NO_CACHE)),
    ],
    package_dir={CONF: "conf"},
    package_data={
        "rsbench": ["splits/**/*.txt", "paper_results.csv"],
        CONF: ["**/*.yaml"],
    },
)
