"""On-demand benchmarks: our figures beside a peer tool measured in the same run."""
