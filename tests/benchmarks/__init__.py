"""Speed and memory benchmarks (slow): each prints its figures."""
