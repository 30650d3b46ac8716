FROM python:3.11-slim
WORKDIR /app
# Dependencies from the lock file only, each checked against its hash (deploy/lock); then
# deskmark itself, built with the locked setuptools and nothing fetched.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY deskmark ./deskmark
COPY integrations ./integrations
COPY webhooks ./webhooks
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && useradd --create-home deskmark
USER deskmark
EXPOSE 8000
CMD ["deskmark", "web"]
