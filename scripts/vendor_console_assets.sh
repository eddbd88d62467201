#!/usr/bin/env bash
# Fetch the web console's JavaScript libraries, exactly the pinned versions, from the npm registry, check each
# tarball against its pinned sha512 integrity, and copy the built files and licenses into
# selfmaker/console/static/vendor/. The results are committed: nothing here runs at install or run time, and
# Node.js is needed only by whoever bumps a version (npm pack; no install, no build, no scripts run).
#
# To upgrade: change a version and its integrity (`npm view NAME@VERSION dist.integrity`), run this script,
# update the file names in selfmaker/console/templates/base.html, and commit the vendor/ directory.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENDOR="$ROOT/selfmaker/console/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# name@version  integrity  file in the package -> file in vendor/ (the license goes to licenses/<name>.txt)
PACKAGES=(
  "cytoscape@3.35.0 sha512-sMvBIXiGMnhkCaWz2R06FwF/27MNlS+Tqvi17foO9UhnUg3XGZccKjxsvEqQFAQYMSSZmN5SxYzUYlQ0DOJJ3g== dist/cytoscape.min.js=cytoscape-3.35.0.min.js"
  # cytoscape-dagre 4 bundles dagre 3.0.0 and graphlib 4.0.1 into its dist file: their licenses come along.
  "cytoscape-dagre@4.0.1 sha512-hyNdh8Vp1nwzBcjHnM4c71G81bFhPmQYLXD2HM9AZIvl+8TrMzWEOPW45hF/XOBQiEguPcDQzi6VrXR1XBcXOA== dist/cytoscape-dagre.min.js=cytoscape-dagre-4.0.1.min.js"
  "@dagrejs/dagre@3.0.0 sha512-ZzhnTy1rfuoew9Ez3EIw4L2znPGnYYhfn8vc9c4oB8iw6QAsszbiU0vRhlxWPFnmmNSFAkrYeF1PhM5m4lAN0Q== -"
  "@dagrejs/graphlib@4.0.1 sha512-IvcV6FduIIAmLwnH+yun+QtV36SC7mERqa86aClNqmMN09WhmPPYU8ckHrZBozErf+UvHPWOTJYaGYiIcs0DgA== -"
  "uplot@1.6.32 sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw== dist/uPlot.iife.min.js=uplot-1.6.32.iife.min.js dist/uPlot.min.css=uplot-1.6.32.min.css"
)

rm -rf "$VENDOR"
mkdir -p "$VENDOR/licenses"
for entry in "${PACKAGES[@]}"; do
  read -r spec integrity files <<<"$entry"
  name="${spec%@*}"
  tarball="$WORK/$(npm pack "$spec" --pack-destination "$WORK" --silent | tail -n 1)"
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [[ "$actual" != "$integrity" ]]; then
    echo "$spec: integrity $actual, expected $integrity" >&2
    exit 1
  fi
  unpacked="$WORK/${name//\//_}"
  mkdir -p "$unpacked"
  tar xzf "$tarball" -C "$unpacked"
  license="$(find "$unpacked/package" -maxdepth 1 -iname 'LICENSE*' | head -n 1)"
  safe="${name#@}"; cp "$license" "$VENDOR/licenses/${safe//\//_}-${spec##*@}.txt"
  [[ "$files" == "-" ]] && continue
  for mapping in $files; do
    cp "$unpacked/package/${mapping%%=*}" "$VENDOR/${mapping#*=}"
  done
done
echo "vendored into $VENDOR:"
ls -1 "$VENDOR" "$VENDOR/licenses"
