# Sourced by test/run and bench/run: makes sure the Debian packages a command needs are present.
# As root it installs what is missing with apt-get; otherwise it prints the exact command and stops.

flowpool_need_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "flowpool: missing Debian packages: ${missing[*]}" >&2
    echo "flowpool: run this, then try again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "flowpool: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Packages every build needs.
FLOWPOOL_BUILD_PACKAGES=(g++ cmake ninja-build)
