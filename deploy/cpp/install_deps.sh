#!/usr/bin/env bash
# Native dependencies of the C++ runtime, for a fresh machine and CI (Debian 12):
#   1. Debian's libsndfile, nlohmann-json, OpenSSL, libzip, libonnx (the ONNX protobuf classes) and
#      GoogleTest (apt-get, as root or with sudo);
#   2. ONNX Runtime's C/C++ headers, which only Debian's next release packages (libonnxruntime-dev):
#      its .deb is fetched with a private, temporary apt state whose sources are the machine's own
#      with the suite renamed, and unpacked (never installed) under $DEPS. The library itself comes
#      from the onnxruntime wheel in the project's venv (see CMakeLists.txt).
# Idempotent: does nothing when the packages are installed and the headers are unpacked.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPS="${AT2SELD_CPP_DEPS:-$HERE/build/deps}"
PACKAGES=(cmake g++ make pkg-config libsndfile1-dev nlohmann-json3-dev libssl-dev libzip-dev libonnx-dev libprotobuf-dev libgtest-dev)
ORT_PACKAGE=libonnxruntime-dev
declare -A NEXT_SUITE=([bookworm]=trixie)

say() { echo "install_deps: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else say "need root (or sudo) to run: $*"; exit 1
    fi
}

install_debian_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The machine's own apt sources (one-line and deb822 files) as one-line "deb" entries whose suite
# is $1, with the suite replaced by $2; the URIs and keyrings stay the machine's.
next_release_sources() {
    local from="$1" to="$2" f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v from="$from" -v to="$to" '
            $1 == "deb" { n = 2; if ($2 ~ /^\[/) { while ($n !~ /\]$/) n++; n++ }
                          if ($(n + 1) == from) { $(n + 1) = to; print } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v from="$from" -v to="$to" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " from " ") && uris != "")
                    { split(uris, u, " "); for (i in u) print "deb" (key != "" ? " [signed-by=" key "]" : "") " " u[i] " " to " " comps }
                types = uris = suites = comps = key = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            { k = tolower($1); sub(/:$/, "", k); $1 = ""; sub(/^ +/, "")
              if (k == "types") types = $0; else if (k == "uris") uris = $0; else if (k == "suites") suites = $0
              else if (k == "components") comps = $0; else if (k == "signed-by") key = $0 }
            END { flush() }' "$f"
    done
}

fetch_ort_headers() {
    local prefix="$DEPS/onnxruntime"
    if [ -f "$prefix/.complete" ]; then return; fi
    # shellcheck disable=SC1091
    local codename; codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    local next="${NEXT_SUITE[$codename]:-}"
    if [ -z "$next" ]; then
        say "no next-release suite known for '$codename'; unpack $ORT_PACKAGE's headers yourself and pass" \
            "-DAT2SELD_ORT_INCLUDE_DIR=DIR to cmake"
        exit 1
    fi
    local apt_dir="$DEPS/apt-$next"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/preferences.d" "$DEPS/debs"
    next_release_sources "$codename" "$next" > "$apt_dir/sources.list"
    if [ ! -s "$apt_dir/sources.list" ]; then
        say "no '$codename' entry in this machine's apt sources to derive '$next' from"
        exit 1
    fi
    local opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
                -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
                -o "Dir::Etc::preferencesparts=$apt_dir/etc/preferences.d" -o "Dir::Etc::preferences=/dev/null"
                -o "APT::Get::List-Cleanup=false" -o "APT::Sandbox::User=root")
    say "fetching $ORT_PACKAGE from $next (private apt state in $apt_dir)"
    apt-get "${opts[@]}" update -q >&2
    (cd "$DEPS/debs" && apt-get "${opts[@]}" download "$ORT_PACKAGE" >&2)
    local deb; deb="$(ls -t "$DEPS"/debs/${ORT_PACKAGE}_*.deb | head -1)"
    rm -rf "$prefix.partial" && mkdir -p "$prefix.partial"
    dpkg -x "$deb" "$prefix.partial"
    test -f "$prefix.partial/usr/include/onnxruntime/onnxruntime_cxx_api.h" \
        || { say "$deb has no usr/include/onnxruntime/onnxruntime_cxx_api.h"; exit 1; }
    basename "$deb" > "$prefix.partial/.complete"
    rm -rf "$prefix" && mv "$prefix.partial" "$prefix"
    rm -rf "$apt_dir"
    say "ONNX Runtime headers in $prefix/usr/include/onnxruntime"
}

install_debian_packages
fetch_ort_headers
