"""Training one repeat the usual way, with plain Keras: a new model per repeat. The benchmarks
run these on sweep's worker pool, whose spawned processes import this module by name (they never
run a benchmark's own script), so they live here and not in the scripts."""

from __future__ import annotations

from sweep.data.problems import Dataset


def plain_keras_fit(dataset: Dataset, settings: dict, seed: int) -> float:
    """The usual way: a new Keras model for one repeat, trained with model.fit (stateless split)
    or, for stateful TBPTT, a stateful Keras LSTM fed chunk by chunk with train_on_batch and
    reset after each batch of sequences. Returns the per-sample test accuracy."""
    import keras
    import numpy as np

    from sweep.data import shaping as prepare

    length, batch, stateful = settings["length"], settings["batch_size"], settings["mode"] == "stateful"
    train = prepare.chunk(dataset.x_train, dataset.y_train, length)
    test = prepare.chunk(dataset.x_test, dataset.y_test, length)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((length, dataset.n_features), batch_size=batch if stateful else None),
        keras.layers.LSTM(settings["units"], stateful=stateful),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(settings["learning_rate"]), loss="binary_crossentropy")
    if not stateful:
        flat = prepare.stateless(train)
        model.fit(flat.x[:, 0], flat.y, batch_size=batch, epochs=settings["epochs"], verbose=0)
        flat_test = prepare.stateless(test)
        return float(np.mean((model.predict(flat_test.x[:, 0], verbose=0)[:, 0] > 0.5) == flat_test.y[:, 0]))
    rng = np.random.default_rng(seed)
    for _ in range(settings["epochs"]):
        for group in prepare.batch_groups(train.n_sequences, batch, rng):
            if len(group) < batch:
                continue  # a stateful Keras model has a fixed batch size
            for j in range(train.n_chunks):
                model.train_on_batch(train.x[group, j], train.y[group])
            model.layers[0].reset_states()
    correct = []
    for start in range(0, test.n_sequences - batch + 1, batch):
        rows = np.arange(start, start + batch)
        for j in range(test.n_chunks):
            correct.append((model.predict_on_batch(test.x[rows, j])[:, 0] > 0.5) == test.y[rows, 0])
        model.layers[0].reset_states()
    return float(np.mean(correct))


def plain_echo_first(args: tuple) -> float:
    dataset, settings, seed = args
    return plain_keras_fit(dataset, settings, seed)


def plain_lag_echo(args: tuple) -> None:
    """One repeat the usual way: a new Keras model, trained for one epoch."""
    import keras
    import numpy as np

    from sweep.data import shaping as prepare

    dataset, length, mode, seed, settings = args
    train = prepare.chunk(dataset.x_train, dataset.y_train, length)
    stateful = mode == "stateful"
    batch = settings["batch_size"]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((length, 1), batch_size=batch if stateful else None),
        keras.layers.LSTM(settings["units"], stateful=stateful, return_sequences=True),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(settings["learning_rate"]), loss="mean_squared_error")
    if not stateful:
        flat = prepare.stateless(train)
        model.fit(flat.x[:, 0], flat.y[:, 0], batch_size=batch, epochs=1, verbose=0)
    else:
        rng = np.random.default_rng(seed)
        for group in prepare.batch_groups(train.n_sequences, batch, rng):
            for j in range(train.n_chunks):
                model.train_on_batch(train.x[group, j], train.y[group, j])
            model.layers[0].reset_states()
