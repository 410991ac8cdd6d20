import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(rel: str) -> str:
    with open(os.path.join(HERE, rel), encoding="utf-8") as f:
        return f.read()


# One version source: rllib_ext/_version.py, read as text (importing the package here
# would need numpy in the build environment).
VERSION = re.search(r'^__version__ = "([^"]+)"$', read("rllib_ext/_version.py"), re.M).group(1)

setup(
    name="rllib_ext",
    version=VERSION,
    description="Policy-granular checkpoints for Ray RLlib: partial restore, Ray-free reading",
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: Apache Software License",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Typing :: Typed",
    ],
    packages=find_packages(include=["rllib_ext", "rllib_ext.*"]),
    package_data={"rllib_ext": ["py.typed"]},
    # CI tests Python 3.11 only (ray 2.60 + torch 2.13 CPU wheels).
    python_requires=">=3.11,<3.12",
    # The reader, the CLI and single-policy files need numpy only; everything else is an extra.
    install_requires=["numpy"],
    extras_require={
        # Checkpoints whose state files are msgpack (module_state.msgpack, policy_state.msgpck).
        "msgpack": ["msgpack"],
        # Checkpoints on object storage (s3://, gs://, ...): read and written through pyarrow.fs.
        "remote": ["pyarrow"],
        # pillow: upstream Tune resolves trainable names like "PPO" by importing every
        # RLlib algorithm, DreamerV3 included, which needs PIL.
        "rllib": ["ray[rllib,tune]>=2.45,<2.61", "torch==2.13.0", "pillow"],
        # PolicyPool.meta_strategy(solver="nash"): scipy's HiGHS linear-program solver.
        "league": ["scipy"],
        # `rllib-ext pool PATH --plot out.png`: the payoff table as a heatmap.
        "plot": ["matplotlib"],
        "tf": ["tensorflow==2.21.*", "tf-keras==2.21.*"],
        # export_onnx / `rllib-ext export --format onnx` (with torch from `rllib`): torch's
        # exporter needs onnx + onnxscript; running an exported file needs onnxruntime only.
        # Versions available for Python 3.11 + numpy 2 on the index CI uses (2026-11).
        "onnx": ["onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0"],
        # The documentation site (`make docs`, tox cell `docs`), with `rllib` (autodoc imports
        # the ...Partial classes). Versions that installed here on 2026-12-04.
        "docs": ["sphinx==8.2.3", "myst-parser==4.0.1", "furo==2025.12.19", "sphinx-argparse==0.6.1",
                 "pytest-markdown-docs==0.9.2"],
        # moto[server] + boto3: a local S3 on 127.0.0.1 for the remote-storage tests;
        # pytest-markdown-docs runs the docs' code blocks (and the numpy-only install runs
        # the Ray-free ones, tests/test_packaging.py).
        "test": ["pytest", "pytest-xdist>=3.2", "pytest-timeout", "hypothesis", "safetensors", "msgpack", "msgpack-numpy",
                 "moto[server]>=5,<6", "boto3", "onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0", "scipy",
                 "matplotlib", "open_spiel==2.0.2", "pytest-markdown-docs==0.9.2", "mypy==2.4.1"],
    },
    entry_points={"console_scripts": ["rllib-ext=rllib_ext.cli:main"]},
)
