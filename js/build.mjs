// Builds the browser EventLog into the files the Python package ships:
//   node js/build.mjs                  -> telemetry_sinks/server/static/{telemetry-sinks,demo}.js
//   node js/build.mjs --outdir DIR     -> the same files in DIR (the tests compare them)
//   node js/build.mjs --core FILE      -> the module without the validator (to measure its size)
import { build } from "esbuild";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const outdir = resolve(option("--outdir") ?? join(root, "telemetry_sinks/server/static"));
const common = {
  bundle: true, format: "esm", target: "es2020", platform: "browser", minify: true,
  legalComments: "eof", charset: "utf8", absWorkingDir: root, logLevel: "warning",
};

const core = option("--core");
if (core) {
  await build({ ...common, entryPoints: ["js/src/index.ts"], outfile: resolve(core),
    external: ["@cfworker/json-schema"] });
} else {
  await build({ ...common, entryPoints: ["js/src/index.ts"], outfile: join(outdir, "telemetry-sinks.js") });
  // The demo page imports the shipped module rather than a copy of it.
  const shipped = { name: "shipped-module", setup(b) {
    b.onResolve({ filter: /^\.\/index$/ }, () => ({ path: "./telemetry-sinks.js", external: true }));
  } };
  await build({ ...common, entryPoints: ["js/src/demo.ts"], outfile: join(outdir, "demo.js"),
    plugins: [shipped] });
}
