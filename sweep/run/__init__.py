"""Working through a study: claim a grid point, train its missing repeats in packs on the worker
pool, race them where the study says so, and store each repeat and the point's record.

Owns the runner and its frozen run context, how repeats are cut into packs and seeded, and the
racing test. Only the main process runs this package; the workers get plain jobs
(:mod:`sweep.train.jobs`). May import NumPy and SciPy; Optuna only through :mod:`sweep.store`.
Importing this package imports nothing.
"""
