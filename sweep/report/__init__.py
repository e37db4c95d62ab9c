"""What a study says once read back: the results table's rows, the chosen point, the capacity
check, the HTML report and the note in optuna-dashboard.

Everything starts from the stored record (:func:`sweep.store.record.read_points`); nothing here
trains, guesses or writes a score. Collecting the numbers is pure and tested directly; drawing them
is apart. May import SciPy (comparisons), Plotly (figures, in ``figures``) and optuna-dashboard
(``dashboard``). Importing this package imports nothing.
"""
