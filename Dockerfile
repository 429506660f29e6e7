# Tally: build the TypeScript, then run it on a slim Node.js 20 image with production dependencies only.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# tally/middleware re-exports the usageLimit middleware from the TypeScript client (one implementation).
COPY clients/typescript/src ./clients/typescript/src
# The dashboard's front end, bundled by Vite into dist/web (served by Tally at /dashboard).
COPY web ./web
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production PORT=3000 TALLY_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY sql ./sql
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# exec form: Tally is PID 1 and receives SIGTERM directly for a graceful shutdown
CMD ["node", "dist/src/main.js"]
