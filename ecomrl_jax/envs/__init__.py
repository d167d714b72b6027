"""One package per business domain: its envs and the policies, oracles and solvers that read
their internals. Every env id is registered in `ecomrl_jax.__init__`."""
