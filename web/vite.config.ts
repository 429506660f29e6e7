// The dashboard's front-end build: one page for /dashboard and /embed/customer, hashed assets under
// /dashboard/assets (served with long-cache headers by src/http/dashboardPages.ts), everything bundled — no CDN.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/dashboard/",
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
});
