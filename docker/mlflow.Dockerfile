# MLflow tracking server for the stack: PostgreSQL backend store, S3-compatible artifact store.
# Build context is docker/: the versions are the ones tests/test_stack.py ran the same server with (constraints.txt).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt mlflow psycopg2-binary boto3 && python -c "import mlflow, psycopg2, boto3"
RUN useradd --create-home --uid 10001 mlflow
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=10s --retries=30 CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:5000/health')"]
ENTRYPOINT ["mlflow"]
