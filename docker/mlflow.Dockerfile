# The official MLflow image lacks a PostgreSQL driver, the basic-auth app's dependency and the S3
# client its artifact store (SeaweedFS) needs.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "psycopg2-binary==2.9.10" "mlflow[auth]==3.17.2" "boto3==1.44.5"
