"""One file per defense or attack: what its paper says it does."""
