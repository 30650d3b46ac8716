# Base images are pinned by digest (the tag says which release it was; the digest is what is
# pulled): a rebuild gets the same bytes. `python3 deploy/pin-images` moves every pin on.
FROM python:3.11.16-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
WORKDIR /app
# Fonts for labels in every language and the library that shapes Arabic and Hindi: the same
# list CI installs (deploy/apt-packages.txt).
COPY deploy/apt-packages.txt ./
RUN apt-get update \
 && grep -v '^#' apt-packages.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
# Dependencies from the lock file only, each checked against its hash (deploy/lock); then
# deskmark itself, built with the locked setuptools and nothing fetched.
# DESKMARK_HEIC=yes (docker compose build --build-arg, or DESKMARK_HEIC in .env) adds iPhone
# HEIC photos: pillow-heif from deploy/heic.lock, whose wheels bundle GPL-2.0 and LGPL-3.0
# codecs (docs/operations.md, "HEIC photos").
ARG DESKMARK_HEIC=no
COPY requirements.lock deploy/heic.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
 && if [ "$DESKMARK_HEIC" = yes ]; then pip install --no-cache-dir --require-hashes -r heic.lock; \
    elif [ "$DESKMARK_HEIC" != no ]; then echo "DESKMARK_HEIC must be yes or no" >&2; exit 1; fi
COPY pyproject.toml README.md ./
COPY deskmark ./deskmark
COPY integrations ./integrations
COPY webhooks ./webhooks
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && useradd --create-home deskmark
USER deskmark
EXPOSE 8000
CMD ["deskmark", "web"]
