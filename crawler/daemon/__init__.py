"""The daemon: adaptive scheduling policy, jobs, side tasks, metrics and logs."""
