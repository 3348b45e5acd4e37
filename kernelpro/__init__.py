"""kernelpro: a GPU kernel optimization agent for KernelBench-format tasks."""

__version__ = "0.1.0"
