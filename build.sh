#!/bin/sh
# The project's two entry points (see README.md):
#   ./build.sh run   install what is missing, build Release, run contactd
#   ./build.sh test  install what is missing, build with ASan+UBSan, run ctest
# Extra arguments after "run" go to contactd (e.g. --config FILE).
set -eu

cd "$(dirname "$0")"

PACKAGES="build-essential cmake pkg-config libuv1-dev libnng-dev \
libmsgpack-dev libinih-dev libjansson-dev libcriterion-dev tzdata \
libmicrohttpd-dev libgmime-3.0-dev libmbedtls-dev"

install_missing() {
    missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "build.sh: installing:$missing"
    if [ "$(id -u)" -ne 0 ]; then
        echo "build.sh: run as root (or install:$missing)" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

jobs=$(nproc 2>/dev/null || echo 2)
mode=${1:-}
[ $# -gt 0 ] && shift

case "$mode" in
run)
    install_missing
    cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release \
        -DCC_BUILD_TESTS=OFF >/dev/null
    cmake --build build/release -j "$jobs"
    exec build/release/core/contactd "$@"
    ;;
test)
    install_missing
    cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=Debug \
        -DCC_SANITIZER=address,undefined -DCC_BUILD_BENCH=OFF >/dev/null
    cmake --build build/sanitize -j "$jobs"
    cd build/sanitize
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure "$@"
    ;;
*)
    echo "usage: ./build.sh run [contactd args] | ./build.sh test [ctest args]" >&2
    exit 2
    ;;
esac
