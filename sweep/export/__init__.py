"""Handing back a trained network: a repeat of a grid point exported as a plain Keras model with
its data contract (:mod:`.contract`), chosen and written by :mod:`.exporting`. Only
:mod:`._keras` imports TensorFlow, and only when a model is built or loaded."""
