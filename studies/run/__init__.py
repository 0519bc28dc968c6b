"""Running a study: the worker loop (claims, heartbeats, hand-backs on shutdown) and the objective that trains
a claimed trial with trainers/ and writes its results through the store.
"""
