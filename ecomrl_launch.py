"""The `ecomrl` command's entry point: joins a multi-process jax job (`jax.distributed`) when the
command line or the cluster asks for it, then runs `ecomrl_jax.cli`.

`jax.distributed.initialize` must run before jax starts its backend, and importing `ecomrl_jax`
starts it (gymnax computes arrays on import), so this module is outside the package and imports
neither jax nor ecomrl_jax before it has decided. Only `ecomrl train` runs on several processes.
"""

import argparse
import os
import sys


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a multi-process `ecomrl train` (also declared by the CLI, for its help)."""
    parser.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                        help="join a multi-process run: process 0's address, reachable from all "
                        "processes (with --num-processes and --process-id)")
    parser.add_argument("--num-processes", type=int, default=None, metavar="P", help="processes in the run")
    parser.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, in [0, P)")
    parser.add_argument("--distributed", action="store_true",
                        help="join a multi-process run described by the cluster's environment "
                        "(SLURM, Open MPI, TPU pods: jax.distributed's auto-detection); implied "
                        "under srun or mpirun with more than one task")


def launched_as_several_tasks(environ) -> bool:
    """SLURM (inside an srun step) or Open MPI (under mpirun) started this process as one of
    several tasks: the environments whose variables jax.distributed reads by itself."""
    if "SLURM_STEP_NODELIST" in environ and int(environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    return "OMPI_MCA_orte_hnp_uri" in environ and int(environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1


def cluster_args(argv: list[str], environ) -> dict | None:
    """`jax.distributed.initialize`'s keyword arguments for `ecomrl ARGV`, or None for a
    one-process run: none of the cluster flags and no multi-task launch (a laptop run)."""
    if not argv or argv[0] != "train":
        return None
    parser = argparse.ArgumentParser(add_help=False)
    add_cluster_flags(parser)
    args, _ = parser.parse_known_args(argv[1:])
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if any(value is not None for value in explicit):
        if None in explicit:
            raise ValueError("--coordinator, --num-processes and --process-id go together; got "
                             + ", ".join(f"{flag} {value}" for flag, value in zip(
                                 ("--coordinator", "--num-processes", "--process-id"), explicit)))
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
        if not 0 <= args.process_id < args.num_processes:
            raise ValueError(f"--process-id must be in [0, --num-processes) = [0, {args.num_processes}), "
                             f"got {args.process_id}")
        return {"coordinator_address": args.coordinator, "num_processes": args.num_processes,
                "process_id": args.process_id}
    if args.distributed or launched_as_several_tasks(environ):
        return {}  # jax.distributed reads the cluster's environment
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cluster = cluster_args(argv, os.environ)
        if cluster is not None:
            import jax

            # the CPU backend's all-reduces across processes: gloo (jax 0.10.2's default, made explicit)
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            try:
                jax.distributed.initialize(**cluster)
            except ValueError as error:  # e.g. --distributed where jax detects no cluster
                raise ValueError(f"cannot join a multi-process run: {error} (jax detects SLURM, "
                                 "Open MPI and TPU pods; elsewhere give --coordinator, "
                                 "--num-processes and --process-id)") from None
    except ValueError as error:
        print(f"ecomrl: error: {error}", file=sys.stderr)
        return 2
    from ecomrl_jax import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
