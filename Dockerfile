# syntax=docker/dockerfile:1
# The sweep image: one worker of a shared study, or its dashboard. No database and no secret is
# in it; the storage URL and the password come from the environment at run time.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=3

# Dependencies first, pinned: this layer is rebuilt only when they change, not with the source.
COPY docker-requirements.txt /tmp/docker-requirements.txt
RUN pip install --requirement /tmp/docker-requirements.txt && rm /tmp/docker-requirements.txt

RUN useradd --create-home --uid 10001 sweep
WORKDIR /home/sweep

COPY pyproject.toml README.md ./
COPY sweep ./sweep
# The dependencies are in already; --no-deps keeps pip from adding the full TensorFlow build.
RUN pip install --no-deps . && rm -rf build sweep.egg-info
COPY studies ./studies

USER sweep
ENTRYPOINT ["sweep"]
CMD ["--help"]
