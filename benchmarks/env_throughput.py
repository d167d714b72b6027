"""Env steps/s of every registered env: a script on top of `ecomrl_jax.benchmark` (`ecomrl bench`).

    python -m benchmarks.env_throughput [--batch-sizes 1024 4096] [--envs ShopperRec-v0] [--devices 4]

On CPU, `--devices N` gets N virtual devices (they share the cores: a correctness smoke test).
"""

from benchmarks.cpu_devices import request_cpu_devices

request_cpu_devices()  # before jax starts

from ecomrl_jax.benchmark import make_parser, run  # noqa: E402


def main(argv=None) -> list[dict]:
    parser = make_parser()
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    main()
