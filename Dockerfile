# Piccolo in a container. compose.yaml runs three members and a Cerializer.
#
#   docker build -t piccolo:0.1.0 .
#   docker run --rm piccolo:0.1.0 --version
#
# The dependencies come from package-lock.json (npm ci), so the image runs the
# versions the tests ran, with package.json's overrides applied (decision 0271;
# a tarball installed with `npm install -g` would resolve them afresh, without
# the overrides). The runtime stage holds what `npm pack` would: dist/src,
# schema, package.json, and the production dependencies.
#
# Written and checked by a linter (test/scripts/docker.test.ts) on a machine
# without a Docker daemon: not yet built or run (docker/README.md).

# Node 20: the oldest line package.json's engines accept (decision 0271).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are here; the build is a step below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY schema ./schema
COPY src ./src
COPY scripts/build-console.mjs ./scripts/build-console.mjs
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim
WORKDIR /opt/piccolo
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/schema ./schema
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/dist/console ./dist/console
RUN chmod +x dist/src/cli/main.js && ln -s /opt/piccolo/dist/src/cli/main.js /usr/local/bin/piccolo
# /data: a member's data (a volume); /secrets: the generated cluster secret and password (a volume the
# services share). Made here so that new volumes start owned by the unprivileged user.
RUN mkdir -p /data /secrets && chown node:node /data /secrets
COPY docker/make-secrets.mjs /opt/piccolo/docker/make-secrets.mjs
USER node
WORKDIR /data
# client, Redis, peer (compose.yaml's --cluster), Cerializer HTTP
EXPOSE 7700 6380 7800 8700
ENTRYPOINT ["piccolo"]
CMD ["server", "--host", "0.0.0.0", "--data-dir", "/data"]
