// Builds the JupyterLab extension the Python package ships:
//   node js/labextension/build.mjs               -> telemetry_sinks/jupyter/labextensions/@telemetry-sinks/jupyterlab
//   node js/labextension/build.mjs --outdir DIR  -> the same files in DIR (the tests compare them)
// 1. esbuild compiles src/ with the browser EventLog of js/src into lib/index.js, leaving
//    JupyterLab's and Lumino's packages as imports (and the validator, for its licence);
// 2. JupyterLab's builder (@jupyterlab/builder: webpack with module federation) makes the
//    prebuilt extension in build/labextension, taking those packages from JupyterLab at run
//    time (core/package.json is its --core-path), so only this extension's own code ships;
// 3. the result is copied to the output with install.json.
// Webpack names modules by their path from the working directory: the build always runs in the
// same place (the repository root, build/ here), so that its output is the same every time.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const args = process.argv.slice(2);
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const outdir = resolve(option("--outdir")
  ?? join(root, "telemetry_sinks/jupyter/labextensions/@telemetry-sinks/jupyterlab"));

await build({
  entryPoints: [join(here, "src/index.ts")], outfile: join(here, "lib/index.js"), absWorkingDir: root,
  bundle: true, format: "esm", target: "es2020", platform: "browser", charset: "utf8",
  legalComments: "inline", logLevel: "warning",
  external: ["@jupyterlab/*", "@lumino/*", "@cfworker/json-schema"],
  // The module's own URL means nothing inside JupyterLab (the collector is given), and webpack
  // would write the build machine's file:// path in its place: the output would depend on where
  // the repository is.
  define: { "import.meta.url": "undefined" },
});

const builder = createRequire(import.meta.url).resolve("@jupyterlab/builder/lib/build-labextension.js");
const done = spawnSync(process.execPath, [builder, "--core-path", join(here, "core"), here],
  { cwd: root, encoding: "utf8" });
if (done.status !== 0) {
  process.stderr.write(done.stdout + done.stderr);
  process.exit(done.status ?? 1);
}
const built = join(here, "build/labextension");
if (!existsSync(join(built, "package.json"))) {
  process.stderr.write(`the builder wrote nothing to ${built}\n${done.stdout}${done.stderr}`);
  process.exit(1);
}
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
cpSync(built, outdir, { recursive: true });
cpSync(join(here, "install.json"), join(outdir, "install.json"));
