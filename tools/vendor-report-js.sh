#!/usr/bin/env bash
# Refresh the JavaScript that `benchbed deployment report` inlines into its HTML files
# (Vega, Vega-Lite, vega-embed: UMD builds and licences), from the npm registry that npm
# is configured with. Run by a maintainer, never at run time; commit the result.
#
#   tools/vendor-report-js.sh [VEGA_VERSION VEGA_LITE_VERSION VEGA_EMBED_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
versions=("vega@${1:-6.4.0}" "vega-lite@${2:-6.4.3}" "vega-embed@${3:-7.3.0}")
target=benchbed/report/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${versions[@]}" >/dev/null)
: > "$target/VERSIONS"
for spec in "${versions[@]}"; do
  name=${spec%@*}
  tarball=$(ls "$work/$name-"[0-9]*.tgz)
  mkdir -p "$work/$name"
  tar -xzf "$tarball" -C "$work/$name"
  cp "$work/$name/package/build/$name.min.js" "$target/$name.min.js"
  cp "$work/$name/package/LICENSE" "$target/LICENSE-$name"
  printf '%s %s\n' "$(basename "$tarball" .tgz)" \
    "$(sha256sum "$target/$name.min.js" | cut -d' ' -f1)" >> "$target/VERSIONS"
done
