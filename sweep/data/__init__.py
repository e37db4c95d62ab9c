"""The data side of a study: what is learned, how it is cut into subsequences, and how a network is
scored on it.

Owns the problems (built-in ones generated from a seed, a user's npz arrays, CSV and Parquet tables,
long series) and their :class:`~sweep.data.problems.Dataset`; the suggested lengths read off the
training data; the TBPTT array shaping (chunks, padding, masks, stateful batch order); the metrics'
arithmetic; and the statistics of repeat scores.

May import NumPy, pandas (tables), statsmodels (suggestions) and SciPy (statistics), each in its
own module; never TensorFlow, Optuna or the database. Importing this package imports nothing.
"""
