# Base images are pinned by digest (the tag says which release it was; the digest is what is
# pulled): a rebuild gets the same bytes. `python3 deploy/pin-images` moves every pin on.
FROM python:3.11.16-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
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
