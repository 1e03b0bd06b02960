// Merged by JupyterLab's builder into its webpack configuration (package.json "webpackConfig").
// Modules are named by their path from the working directory (the repository root) instead of
// by a hash of their absolute path, so that the build is the same wherever the repository is
// (the container's entry module otherwise hashes the absolute paths of what it exposes).
module.exports = { optimization: { moduleIds: "named" } };
