"""Running suites: the runner (plan, train or load each model, run its cells, write records), what identifies a
trained model in the cache, the checks of a run's device and output folder, one attack's execution and tuning on
the attacker's own data, the evaluation of a defended model, the executors that spread models over processes, GPUs
or Ray, and the hardware measurements."""
