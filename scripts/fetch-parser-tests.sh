#!/usr/bin/env bash
# Fetch the public IRC parser test vectors (PyPI package `irc-parser-tests`, CC0 YAML data) and
# convert them to JSON for protocol/tests/parser_vectors.rs.
#
#   scripts/fetch-parser-tests.sh [OUT-DIR]     (default: target/irc-parser-tests)
#
# Writes OUT-DIR/json/<name>.json for msg-split, msg-join, userhost-split, validate-hostname and
# mask-match. The wheel's version and SHA-256 are pinned. Idempotent: prints nothing and does
# nothing when the JSON files are already there. Needs python3 with pip and access to PyPI;
# PyYAML is used if installed, otherwise it is installed into OUT-DIR/pylib (not system-wide).
set -euo pipefail

version="0.0.4"
wheel="irc_parser_tests-${version}-py3-none-any.whl"
sha256="a6cbe04063723a6fcf9a117b5e62d0e0bd492f35b2889354574404c1c47f4470"
names=(msg-split msg-join userhost-split validate-hostname mask-match)

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/irc-parser-tests}"
json="$out/json"

done_already=1
for n in "${names[@]}"; do
  [[ -s "$json/$n.json" ]] || done_already=0
done
if [[ $done_already == 1 && -f "$json/VERSION" && "$(cat "$json/VERSION")" == "$version" ]]; then
  exit 0
fi

die() {
  echo "fetch-parser-tests: error: $*" >&2
  exit 1
}

command -v python3 >/dev/null || die "python3 is not installed"
python3 -m pip --version >/dev/null 2>&1 || die "pip is not available (python3 -m pip)"

mkdir -p "$out/wheel" "$json"
if [[ ! -f "$out/wheel/$wheel" ]]; then
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --disable-pip-version-check --timeout 20 --retries 2 \
    --dest "$out/wheel" "irc-parser-tests==$version" >"$out/pip.log" 2>&1; then
    cat "$out/pip.log" >&2
    die "pip could not download irc-parser-tests==$version (is PyPI reachable?)"
  fi
fi
got="$(sha256sum "$out/wheel/$wheel" | cut -d' ' -f1)"
if [[ "$got" != "$sha256" ]]; then
  rm -f "$out/wheel/$wheel"
  die "$wheel has SHA-256 $got, expected $sha256"
fi

# PyYAML: the installed one, else a private copy under OUT-DIR/pylib.
pypath=""
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  if ! python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import yaml' "$out/pylib" \
    >/dev/null 2>&1; then
    if ! python3 -m pip install --quiet --disable-pip-version-check --timeout 20 --retries 2 \
      --target "$out/pylib" PyYAML >"$out/pip.log" 2>&1; then
      cat "$out/pip.log" >&2
      die "pip could not install PyYAML into $out/pylib (is PyPI reachable?)"
    fi
  fi
  pypath="$out/pylib"
fi

# The wheel is a zip: read the YAML files straight out of it.
PYTHONPATH="$pypath${PYTHONPATH:+:$PYTHONPATH}" python3 - "$out/wheel/$wheel" "$json" "${names[@]}" <<'EOF'
import json, os, sys, zipfile
import yaml

wheel, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        data = yaml.safe_load(z.read(f"parser_tests/data/{name}.yaml").decode("utf-8"))
        tmp = os.path.join(out, f".{name}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
        os.replace(tmp, os.path.join(out, f"{name}.json"))
EOF
echo "$version" >"$json/VERSION"
echo "fetch-parser-tests: irc-parser-tests $version -> $json"
