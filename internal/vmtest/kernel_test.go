package vmtest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuestKernelFetchFails: when the mirror cannot be reached, fetching
// the guest kernel fails at once with one line that names the package, and
// leaves nothing in the cache but its lock. The mirror is a closed port on
// loopback; the context only bounds a hang.
func TestGuestKernelFetchFails(t *testing.T) {
	cache := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join("..", "..", "hack", "vm", "guest-kernel.sh"))
	cmd.Env = append(os.Environ(), "XDPIPE_VM_CACHE="+cache, "XDPIPE_VM_MIRROR=http://127.0.0.1:9/debian")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("guest-kernel.sh still ran after %v against a closed port: %s", 2*time.Minute, out)
	}
	msg := strings.TrimRight(string(out), "\n")
	if err == nil || strings.Count(msg, "\n") != 0 ||
		!strings.HasPrefix(msg, "guest-kernel: cannot fetch the guest kernel (linux-binary-") {
		t.Fatalf("exit %v, output %q: want a failure in one line naming the package", err, msg)
	}
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if e.Name() != ".lock" {
			left = append(left, e.Name())
		}
	}
	if len(left) != 0 {
		t.Errorf("the failed fetch left %v in the cache", left)
	}
}
