// Bundles src/ into ../root/web/static (committed): the root serves it with no
// Node.js. Run `npm ci && npm run build` after editing src/.
import * as esbuild from "esbuild";
import { gzipSync } from "node:zlib";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";

const out = new URL("../root/web/static/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: { app: "src/app.js" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: out,
  legalComments: "none",
  logLevel: "info",
});
// pre-compressed siblings: aiohttp serves app.js.gz to a browser that accepts gzip
for (const name of ["app.js", "app.css"]) {
  const body = readFileSync(out + name);
  writeFileSync(out + name + ".gz", gzipSync(body, { level: 9 }));
  console.log(`${name}: ${(body.length / 1024).toFixed(1)} KB, ${(gzipSync(body, { level: 9 }).length / 1024).toFixed(1)} KB gzipped`);
}
