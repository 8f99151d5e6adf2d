#!/bin/bash
# README command 2: install everything bsoncrypt needs on Debian 12, build and
# install the extension, and run the whole test suite.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/common.sh"
cd "$top"
install_packages
build_and_install
run_unprivileged "$top" scripts/run-tests.sh "$@"
