"""`asyncrl view RUN_DIR`: a read-only web page on a run dir, live while the run goes on."""
