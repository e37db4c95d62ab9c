"""The study database: everything that reads or writes it.

Owns the connection (storage URLs, engines, SQLite's locking, retries through dropped
connections, liveness of workers on a shared study, one-line descriptions of database errors),
sweep's trial protocol (create or resume a study, enqueue its grid, claim, record, fail, release),
the stored record of a grid point (its keys, its one writer, its one reader and the upgrades of
older formats), and the one adapter of Optuna's private API.

May import Optuna and SQLAlchemy; never TensorFlow. Importing this package imports nothing.
"""
