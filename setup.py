"""Builds the optional C extension ``vecexplore._native`` (csrc/native.c).

Everything else is configured in pyproject.toml. The extension holds the
evaluation kernels; without it (no compiler) vecexplore falls back to the numba
kernels and says so once (see vecexplore/eval/native.py). An editable install
(``pip install -e .``, what ``make test`` runs) builds it into the source tree;
so does ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "vecexplore._native",
            sources=["csrc/native.c"],
            # No -ffast-math: the kernels must give pycocotools' bits.
            extra_compile_args=["-O2", "-fno-fast-math", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
