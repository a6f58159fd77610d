#!/usr/bin/env bash
# Installs saltproxy's consumer library from BUILD_DIR into a temporary prefix, then configures,
# builds and runs tests/consumer/find_package/ against it with find_package(saltproxy).
#   find_package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source/tests/consumer/find_package" -B "$work/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/user" | grep -qx "released k"
echo "find_package(saltproxy) works: saltproxy::consumer linked and ran"
