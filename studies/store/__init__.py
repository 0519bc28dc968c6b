"""The database, Optuna's tables and tailtune's: every table definition and SQL statement lives here.

`db` connects (pool, retries of transient errors, named locks, migrations); `storage` is the one boundary with
Optuna's internals; `registry` creates, reads and pages studies and trials; `claims` hands trials to workers in
one transaction; `lifecycle` changes a study after its creation; `tokens` keeps the API's named tokens.
"""
