"""`asyncrl eval`: run an environment against a model and summarise the rewards."""
