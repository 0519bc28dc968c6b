"""What a study is: its spec (method, data, budget, objectives, fixed values), its search space and samplers,
and the typed records the store returns. Pure data and validation: nothing here opens a database or a file.
"""
