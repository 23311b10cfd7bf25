"""`asyncrl rl`: the three processes of a run, started, watched and stopped together."""
