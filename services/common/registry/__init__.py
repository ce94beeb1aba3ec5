"""The experiment registry as every service reads it.

Only the assignment service writes experiments (`services.assignment.registry`); the other
services read them through this package, so the Redis hash of experiment documents is parsed
one way, into one typed model:

- `models`: the experiment document (`ExperimentPublic` and the plans it is made of);
- `keys`: the Redis key layout of the registry;
- `errors`: `RegistryError` and the not-found error readers answer with;
- `reader`: async reads (list, get) and the sync read of running experiments for batch jobs;
- `cache`: the in-process evaluation config snapshot, refreshed on registry writes.
"""
