"""What a study leaves on disk: the shared stage-1 cache (backbones and feature banks, written atomically and
verified on read) and each trial's stage-2 output, from which a model file is assembled. Files only; no SQL.
"""
