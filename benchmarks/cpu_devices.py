"""`--devices N` on CPU: N virtual devices, which XLA makes only when told before jax starts."""

import argparse
import os
import sys

FLAG = "--xla_force_host_platform_device_count"


def request_cpu_devices(argv: list[str] | None = None) -> None:
    """Add `FLAG=N` to `XLA_FLAGS` for the `--devices N` in `argv` (default: the command line),
    unless the user's flags already set it. It only shapes the host (CPU) platform: on a GPU or
    TPU jax still runs on the accelerators. Call it before anything starts jax."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--devices", type=int, default=1)
    devices = parser.parse_known_args(sys.argv[1:] if argv is None else argv)[0].devices
    flags = os.environ.get("XLA_FLAGS", "")
    if devices > 1 and FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={devices}".strip()
