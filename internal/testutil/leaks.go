package testutil

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Resources is a snapshot of what the process holds that a leak would grow:
// open file descriptors and memory mappings that are not plain heap or
// binary text (AF_XDP rings, UMEMs, BPF maps show up here).
type Resources struct {
	FDs      []string // targets of /proc/self/fd links
	Mappings []string // /proc/self/maps lines of interest
}

// Snapshot reads the current Resources.
func Snapshot() (Resources, error) {
	var r Resources
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return r, err
	}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the fd ReadDir itself used, closed since
		}
		if runtimeOwned(target) {
			continue
		}
		r.FDs = append(r.FDs, target)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return r, err
	}
	for _, line := range strings.Split(string(maps), "\n") {
		// Mappings of devices and anonymous inodes: xsk rings, bpf maps.
		if strings.Contains(line, "anon_inode:") || strings.Contains(line, "socket:") || strings.Contains(line, "/dev/") {
			r.Mappings = append(r.Mappings, line)
		}
	}
	return r, nil
}

// runtimeOwned reports fds the Go runtime and os/exec open lazily and keep
// (the netpoller, pidfds, cgroup CPU limits): not leaks of the code under test.
func runtimeOwned(target string) bool {
	for _, p := range []string{"anon_inode:[eventpoll]", "anon_inode:[eventfd]", "anon_inode:[pidfd]", "/sys/fs/cgroup/"} {
		if strings.HasPrefix(target, p) {
			return true
		}
	}
	return false
}

// RunCheckingLeaks runs the package's tests, then fails the run if it holds
// more file descriptors or special mappings than before. Use it as
//
//	func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }
func RunCheckingLeaks(m *testing.M) { os.Exit(CheckLeaks(m)) }

// CheckLeaks is RunCheckingLeaks for a TestMain with work of its own after
// the tests: it returns the exit code instead of exiting. Finalizers may
// close some fds late, so the check retries briefly.
func CheckLeaks(m *testing.M) int {
	before, err := Snapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "leak check: snapshot:", err)
		return 2
	}
	code := m.Run()
	var after Resources
	settled := func() bool {
		after, err = Snapshot()
		return err != nil || len(after.FDs) <= len(before.FDs) && len(after.Mappings) <= len(before.Mappings)
	}
	if _, ok := poll(time.Second, settled); !ok {
		fmt.Fprintf(os.Stderr, "leak check: %d fds before, %d after; %d special mappings before, %d after\n",
			len(before.FDs), len(after.FDs), len(before.Mappings), len(after.Mappings))
		fmt.Fprintf(os.Stderr, "fds now: %v\nmappings now:\n%s\n", after.FDs, strings.Join(after.Mappings, "\n"))
		return 1
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "leak check: snapshot:", err)
		return 2
	}
	return code
}
