import re

from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()
with open("minifcn/__init__.py", encoding="utf-8") as f:  # the version lives there, in one place
    version = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

setup(
    name="minifcn",
    version=version,
    description='"Fully Convolutional Networks for Semantic Segmentation" rebuilt from scratch with NumPy and CuPy',
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="BSD-2-Clause",  # LICENSE
    packages=find_packages(include=["minifcn", "minifcn.*"]),
    package_data={"minifcn": ["cuda/*.cu", "cuda/*.cuh"]},
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "scipy>=1.10", "pillow>=9.0", "tqdm>=4.60"],
    extras_require={
        # the tests run the lesson notebooks too; ruff (pinned: its formatting changes between versions) checks style;
        # NVRTC, the compiler CuPy uses, checks the CUDA sources on machines without a GPU (Linux wheels only)
        "test": [
            "pytest>=7.0",
            "pytest-xdist>=3.2",  # the suite on every core (pytest.ini: -n auto)
            "nbclient>=0.8",
            "nbformat>=5.7",
            "ipykernel>=6.0",
            "matplotlib>=3.6",
            "ruff==0.17.6",
            "nvidia-cuda-nvrtc-cu12; platform_system == 'Linux' and platform_machine in 'x86_64 aarch64'",
        ],
        "lessons": ["jupyterlab", "matplotlib>=3.6"],
        "cuda12": ["cupy-cuda12x>=13.0"],
        "cuda13": ["cupy-cuda13x>=13.6"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
