"""Environment families; each module registers its ids in ecomrl_jax.__init__."""
