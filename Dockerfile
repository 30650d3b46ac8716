FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY deskmark ./deskmark
COPY integrations ./integrations
COPY webhooks ./webhooks
COPY worker ./worker
RUN pip install --no-cache-dir . && useradd --create-home deskmark
USER deskmark
EXPOSE 8000
CMD ["deskmark", "web"]
