package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// NetNS is a network namespace made by a test, removed by its cleanup.
type NetNS struct {
	Name string
}

var nsSeq atomic.Uint32

// uniqueName returns a name unique to this process and call, short enough for
// an interface name (15 bytes).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d%c", prefix, os.Getpid()%100000, 'a'+rune(nsSeq.Add(1)%26))
}

// NewNetNS creates a fresh network namespace with its loopback up. It is
// deleted when the test ends, pass or fail.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	RequireRoot(tb)
	RequireTool(tb, "ip")
	ns := &NetNS{Name: uniqueName("xdpt")}
	MustRun(tb, "ip", "netns", "add", ns.Name)
	tb.Cleanup(func() {
		if out, err := run("ip", "netns", "del", ns.Name); err != nil {
			tb.Errorf("cleanup: ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	MustRun(tb, "ip", "-n", ns.Name, "link", "set", "lo", "up")
	return ns
}

// Do runs fn on an OS thread that has joined the namespace, for calls whose
// effect depends on the calling thread's namespace: opening AF_XDP and packet
// sockets, resolving interface indexes, attaching XDP programs. Sockets and
// links made inside fn stay in the namespace after it returns.
func (ns *NetNS) Do(fn func() error) error {
	target, err := os.Open("/var/run/netns/" + ns.Name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns.Name, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns.Name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it when this
		// goroutine exits, so no other goroutine runs in the wrong namespace.
		return fmt.Errorf("setns back from %s: %w (fn: %v)", ns.Name, err, fnErr)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// MustDo is Do that fails the test on error.
func (ns *NetNS) MustDo(tb testing.TB, fn func() error) {
	tb.Helper()
	if err := ns.Do(fn); err != nil {
		tb.Fatal(err)
	}
}

// Run runs a command inside the namespace and returns its combined output.
func (ns *NetNS) Run(name string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// MustRun is Run that fails the test on error.
func (ns *NetNS) MustRun(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		tb.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), ns.Name, err, out)
	}
	return out
}

// Batch runs ip commands (one a line, without "ip") in the namespace with
// one ip process, failing the test on error: the VM stage emulates its
// CPUs, where every process costs.
func (ns *NetNS) Batch(tb testing.TB, lines ...string) {
	tb.Helper()
	batch(tb, []string{"-n", ns.Name}, lines)
}

func batch(tb testing.TB, opts, lines []string) {
	tb.Helper()
	var buf bytes.Buffer
	cmd := exec.Command("ip", append(opts, "-batch", "-")...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		tb.Fatalf("ip %s -batch:\n%s\n%v: %s", strings.Join(opts, " "), strings.Join(lines, "\n"), err, buf.String())
	}
}

// MustRun runs a command in the test's own namespace, failing the test on error.
func MustRun(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := run(name, args...)
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func run(name string, args ...string) (string, error) {
	var buf bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}
