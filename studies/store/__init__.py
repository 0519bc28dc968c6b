"""The database, Optuna's tables and tailtune's: every table definition and SQL statement lives here.

`db` connects (pool, retries of transient errors, named locks, migrations); `tables` defines tailtune's tables and
`storage`, the one boundary with Optuna's internals, takes Optuna's; `registry` creates, reads and pages studies and
trials; `claims` hands trials to workers in one transaction; `workers` keeps the workers' rows and heartbeats;
`lifecycle` changes a study after its creation; `tokens` keeps the API's named tokens. Nothing outside this
package opens a connection or builds a statement (tests/test_architecture.py checks it).
"""
