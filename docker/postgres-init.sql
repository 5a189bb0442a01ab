-- One PostgreSQL for the stack: a database for MLflow's tracking store and one for Prefect's API.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
