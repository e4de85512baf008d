package vmtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnvironmentNamesHostQemuAndGuest: the line each boot logs names the
// host's kernel, qemu's version (or why there is none) and the guest
// kernel as guest-kernel.sh --describe puts it, pinned or not.
func TestEnvironmentNamesHostQemuAndGuest(t *testing.T) {
	const guest = "guest kernel 6.15.10+deb13-amd64 (Debian 6.15.10-1~bpo13+1), NOT the pinned 6.14.0+deb13-amd64 (Debian 6.14.0-1~bpo13+1): that one is no longer on the mirror"
	fetch := filepath.Join(t.TempDir(), "guest-kernel.sh")
	if err := os.WriteFile(fetch, []byte("#!/bin/sh\n[ \"$1\" = --describe ] && echo '"+guest+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	got := environment(fetch)
	parts := strings.Split(got, "; ")
	if len(parts) != 3 || parts[0] != "host kernel "+strings.TrimSpace(string(host)) || parts[2] != guest ||
		!strings.HasPrefix(parts[1], "QEMU emulator version ") && !strings.HasPrefix(parts[1], "qemu-system-x86_64 --version: ") {
		t.Errorf("environment: %q\nwant host kernel, qemu's version and %q", got, guest)
	}
	t.Log(got)
}
