// Package testutil holds the fixtures that xdpipe's tests share: privilege
// and kernel-feature gating, and network namespaces joined by veth pairs.
//
// Gating follows cilium/ebpf's internal/testutils: a test that needs root or
// a kernel feature skips with the reason on a machine that lacks it, but under
// CI=true, where the machine is known to have everything, it fails instead, so
// a skip can never hide a regression.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run under CI (CI=true), where every
// capability the suite needs is present and a missing one is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test with reason, or fails it under CI=true.
func SkipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	reason := fmt.Sprintf(format, args...)
	if InCI() {
		tb.Fatalf("required under CI=true: %s", reason)
	}
	tb.Skip(reason)
}

// RequireRoot gates a test on CAP_NET_ADMIN and CAP_BPF (checked as euid 0,
// the way the suite is run). Under -short (make unit) it skips, as root
// too, also under CI=true: -short asks for the tests that touch neither
// the kernel's networking nor BPF.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs root (CAP_NET_ADMIN, CAP_BPF): skipped under -short")
	}
	if unix.Geteuid() != 0 {
		SkipOrFail(tb, "needs root (CAP_NET_ADMIN, CAP_BPF); run as root")
	}
}

// RequireTool gates a test on the programs it runs: each of names must be
// found in PATH. A missing one skips the test naming it, or fails it under
// CI=true, instead of an exec error from deep inside the test.
func RequireTool(tb testing.TB, names ...string) {
	tb.Helper()
	var missing []string
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		SkipOrFail(tb, "needs %s, not found in PATH (hack/deps.sh installs the tools of each make target)", strings.Join(missing, ", "))
	}
}
