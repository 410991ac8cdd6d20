from setuptools import find_packages, setup

setup(
    name="rllib_ext",
    version="0.1.0",
    description="Policy-granular checkpoints for Ray RLlib: partial restore, Ray-free reading",
    packages=find_packages(include=["rllib_ext", "rllib_ext.*"]),
    python_requires=">=3.9",
    # The reader needs numpy only; the algorithms need RLlib (torch pinned to the CPU build).
    install_requires=["numpy"],
    extras_require={
        # pillow: upstream Tune resolves trainable names like "PPO" by importing every
        # RLlib algorithm, DreamerV3 included, which needs PIL.
        "rllib": ["ray[rllib,tune]==2.60.0", "torch==2.13.0", "pillow"],
        "tf": ["tensorflow==2.21.*", "tf-keras==2.21.*"],
        # moto[server] + boto3: a local S3 on 127.0.0.1 for the remote-storage tests.
        "test": ["pytest", "pytest-xdist", "pytest-timeout", "hypothesis", "safetensors", "msgpack", "msgpack-numpy",
                 "moto[server]>=5,<6", "boto3"],
    },
    entry_points={"console_scripts": ["rllib-ext=rllib_ext.cli:main"]},
)
