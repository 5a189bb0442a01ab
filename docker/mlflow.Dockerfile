# MLflow tracking server for the stack: PostgreSQL backend store, S3-compatible artifact store.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "mlflow==3.17.2" "psycopg2-binary==2.9.10" "boto3==1.40.0"
RUN useradd --create-home --uid 10001 mlflow
USER mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow"]
