#!/usr/bin/env bash
# Prints in a few lines what a test run's results depend on besides the
# code: Go, the kernel, the distribution, qemu, the pinned clang, the VM
# test bed's guest kernel (pinned or not) and, for the hack/deps.sh sets
# given, the installed version of each Debian package. Installs nothing,
# needs no root; make test and make unit start with it.
#
#   hack/env.sh [SET...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# The first line of a command's output, or what is missing.
first() {
  local out
  if out=$("$@" 2>&1) && [[ -n $out ]]; then echo "${out%%$'\n'*}"; else echo "no $1"; fi
}
distro=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}")
[[ -r /etc/debian_version ]] && distro+=" $(cat /etc/debian_version)"
echo "env: $(first "${GO:-go}" version); kernel $(uname -r); ${distro:-unknown distribution}; CI=${CI:-}"
echo "env: $(first qemu-system-x86_64 --version); $(first clang-14 --version); $("$here/vm/guest-kernel.sh" --describe 2>&1 | head -n1)"
if (($#)); then "$here/deps.sh" --versions "$@"; fi
