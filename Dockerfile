# The modelmill worker: serves every pipeline's deployment against the Prefect and MLflow servers.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 MODELMILL_HOME=/data MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY modelmill ./modelmill
COPY flows ./flows
COPY tasks ./tasks
# The CPU build of torch from PyTorch's own index (PyPI's default build bundles CUDA, several GB).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 && pip install ".[postgres,neural,dask,text]"
COPY pipelines ./pipelines
COPY expectations ./expectations
COPY prefect.yaml ./
RUN useradd --create-home --uid 1000 modelmill && mkdir -p /data && chown modelmill /data
USER modelmill
VOLUME ["/data"]
CMD ["modelmill", "serve"]
