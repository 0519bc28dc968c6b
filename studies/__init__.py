"""The search: what a study is, where it is stored, how workers run it, what it leaves on disk, what it reports.

Sub-packages, and the one way their imports run (checked by the import contracts in pyproject.toml):
`run`, `reports` → `store`, `artifacts` → `definition`; all of them may use `trainers`, none of them `service`
or `tailtune`.
"""
