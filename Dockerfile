# The ftjob operator: kopf and the ftjob package, nothing of the trainer (no torch).
# Build: docker build -t ghcr.io/ftjob/operator:0.1.0 .
FROM python:3.11.10-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY trainer_image/ftjob_trainer ./trainer_image/ftjob_trainer
COPY requirements/lock.txt /tmp/lock.txt
RUN pip install --no-cache-dir -c /tmp/lock.txt setuptools \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11.10-slim-bookworm
ARG FTJOB_VERSION=0.1.0
ENV FTJOB_VERSION=${FTJOB_VERSION} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
COPY requirements/lock.txt /tmp/lock.txt
# The operator extra at the versions the lock pins (the ones `make test` passed with).
RUN pip install -c /tmp/lock.txt "/wheels/ftjob-${FTJOB_VERSION}-py3-none-any.whl[operator]" \
    && rm -rf /wheels /tmp/lock.txt \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin ftjob
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["kopf"]
CMD ["run", "-m", "ftjob.controller.handlers", "--all-namespaces", \
     "--liveness=http://0.0.0.0:8080/healthz", "--log-format=json"]
