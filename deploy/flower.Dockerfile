# Flower for docker-compose's `--profile flower`: the same pinned base as deskmark's image, and
# Flower with its dependencies from deploy/flower.lock, each checked against its hash.
FROM python:3.11.16-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
COPY deploy/flower.lock /tmp/flower.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/flower.lock && rm /tmp/flower.lock \
    && useradd --create-home flower
USER flower
EXPOSE 5555
