#!/usr/bin/env bash
# Refresh the vendored front-end libraries from the npm registry (the versions pinned in package-lock.json).
# The built files are committed, so installing foldatlas needs neither npm nor a network.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --ignore-scripts --no-audit --no-fund
out=../src/foldatlas/service/static/vendor
mkdir -p "$out"
cp node_modules/3dmol/build/3Dmol-min.js "$out/3Dmol-min.js"
cp node_modules/3dmol/LICENSE "$out/3Dmol-LICENSE.txt"
cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css "$out/"
cp node_modules/swagger-ui-dist/LICENSE "$out/swagger-ui-LICENSE.txt"
echo "3dmol $(node -p "require('./node_modules/3dmol/package.json').version")" > "$out/VERSIONS.txt"
echo "swagger-ui-dist $(node -p "require('./node_modules/swagger-ui-dist/package.json').version")" >> "$out/VERSIONS.txt"
cp node_modules/regl/dist/regl.min.js "$out/regl-min.js"
cp node_modules/regl/LICENSE "$out/regl-LICENSE.txt"
echo "regl $(node -p "require('./node_modules/regl/package.json').version")" >> "$out/VERSIONS.txt"
