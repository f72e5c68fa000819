"""splitbench's tests, in folders that mirror the layers of benchmark/."""
