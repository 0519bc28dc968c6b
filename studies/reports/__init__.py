"""What a study shows: the report page and its figures, the CSV of every trial, and the exported model file
with its card. Reads the store and the artifacts; writes nothing back.
"""
