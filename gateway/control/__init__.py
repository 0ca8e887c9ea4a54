"""The control plane: the experiments database, its change counter and the leases."""
