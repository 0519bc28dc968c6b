# One image for every tailtune role; the command picks the role:
#   docker run IMAGE                                  -> REST API on :8000 (the default CMD)
#   docker run IMAGE worker --storage URL             -> pulls trials until the studies are done
#   docker run IMAGE dashboard --storage URL ...      -> optuna-dashboard on :8080
#   docker run IMAGE db upgrade --storage URL         -> runs the database migrations once
#
# Base image: python:3.11-slim, not nvidia/cuda. The torch wheel from PyPI bundles its CUDA 13 runtime
# (cuBLAS, cuDNN, NCCL, ... as nvidia-* wheels inside the venv), so a GPU host only has to provide the
# driver, which the NVIDIA container toolkit (docker) or the device plugin (Kubernetes) mounts into the
# container. A CUDA base image would add a second copy of those libraries. The same image runs on CPU hosts.
#
# Both stages must start from the same image: the venv's python is a link to the base image's interpreter.
ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: compilers live here only ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# build-essential covers a dependency that has no wheel for the build platform; it never reaches the
# final stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall torch (a few GB).
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt

# The project itself: everything pyproject.toml packages (readme, packages, migrations as package data).
COPY README.md ./
COPY trainers ./trainers
COPY studies ./studies
COPY service ./service
COPY tailtune ./tailtune
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/tailtune --help > /dev/null

# ---- runtime: the venv, tini and a non-root user ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# tini runs as PID 1: it forwards SIGTERM to tailtune (a worker then finishes or cleanly fails its trial)
# and reaps orphaned child processes; Kubernetes has no `init: true` like docker compose.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid so Kubernetes' runAsNonRoot can verify it and fsGroup can match it. The artifact
# directory is created here, owned by that user, so a fresh named volume mounted on it is writable.
RUN groupadd --system --gid 10001 tailtune \
 && useradd --system --uid 10001 --gid tailtune --create-home --home-dir /home/tailtune \
      --shell /usr/sbin/nologin tailtune \
 && mkdir -p /var/lib/tailtune/artifacts /data \
 && chown tailtune:tailtune /var/lib/tailtune/artifacts

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TAILTUNE_ARTIFACT_DIR=/var/lib/tailtune/artifacts \
    TAILTUNE_DATA_ROOT=/data \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER 10001:10001
WORKDIR /home/tailtune
EXPOSE 8000 8080

# Checks the API (the default command); compose and Kubernetes set their own checks for the other roles.
# urlopen raises on a 503 (database unreachable), so the exit status is 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--", "tailtune"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
