// Package vmtest runs commands in xdpipe's VM test bed (hack/vm/run.sh) from
// host-side Go tests: SoftRoCE for the rdma package (for hosts whose kernel
// has no RDMA) and virtio-net NICs that bind AF_XDP in zero-copy mode (for
// hosts without such a NIC), on one guest kernel: the Debian trixie-backports kernel
// (>= 6.13) that hack/vm/guest-kernel.pin names, under single-threaded TCG.
// Each boot logs the host's kernel, qemu's version and the guest kernel,
// saying whether it is the pinned one.
//
// A test builds what the guest runs into the VM's results directory (the
// guest's working directory, shared read-write), then calls Run:
//
//	vm := vmtest.New(t, vmtest.Options{NICs: 2})
//	vm.BuildTest("./xsk", "xsk.test")
//	if err := vm.Run("./xsk.test", "-test.v"); err != nil {
//		t.Fatal(err)
//	}
//
// The guest runs the host's own binaries over a read-only 9p share of the
// host root: a binary built on the host runs there unchanged.
package vmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// Options configure New. The zero value works: no NICs, a 10-minute limit.
type Options struct {
	// NICs is 0 or 2: two virtio-net NICs, xzc0 and xzc1, wired to each
	// other, that bind AF_XDP in zero-copy mode. The guest command finds
	// their names in XDPIPE_VM_NICS.
	NICs int
	// Queues is the queue pairs per NIC (default 1; XDPIPE_VM_QUEUES in
	// the guest). More than one needs root on the host (taps in a
	// network namespace).
	Queues int
	// NoIOMMUNIC adds a NIC without iommu_platform (XDPIPE_VM_NOIOMMU_NIC,
	// xzcn), where the driver has no DMA API and refuses zero-copy.
	NoIOMMUNIC bool
	// HashReport has xzc1 report each received frame's RSS hash to its
	// driver (XDPIPE_VM_HASH_NIC in the guest), which an XDP program
	// reads with bpf_xdp_metadata_rx_hash. Needs root on the host (taps
	// in a network namespace: qemu reports hashes only over a tap).
	HashReport bool
	// Timeout bounds the whole VM run (default 10 minutes); on expiry Run
	// returns an error.
	Timeout time.Duration
	// Needs lists more host programs the guest command runs (looked up in
	// PATH); a missing one skips the test, or fails it under CI=true,
	// naming `hack/deps.sh Deps`.
	Needs []string
	// Deps is the hack/deps.sh set that installs Needs (default "vm").
	Deps string
}

// VM is one test's VM run: its results directory and options.
type VM struct {
	t    testing.TB
	opts Options
	root string
	// Dir is the results directory: the guest's working directory
	// (/tmp/results there), where command.log, status and console.log
	// land. It is the test's, removed after it.
	Dir string
	// env is what Run logs at each boot: the host kernel, qemu and the
	// guest kernel.
	env string
}

// New checks that the host can boot the VM the options ask for (skipping
// the test, or failing it under CI=true, when it cannot), fetches the guest
// kernel (hack/vm/guest-kernel.sh) when none is cached, and makes the
// results directory.
func New(t testing.TB, opts Options) *VM {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM (-short)")
	}
	if os.Getenv("XDPIPE_IN_VM") != "" {
		t.Skip("already inside the VM")
	}
	if opts.Queues == 0 {
		opts.Queues = 1
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Deps == "" {
		opts.Deps = "vm"
	}
	for _, bin := range []string{"qemu-system-x86_64", "busybox", "cpio", "xz"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.SkipOrFail(t, "%s missing: run hack/deps.sh vm", bin)
		}
	}
	for _, bin := range opts.Needs {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.SkipOrFail(t, "%s missing: run hack/deps.sh %s", bin, opts.Deps)
		}
	}
	if opts.Queues > 1 || opts.HashReport {
		testutil.RequireRoot(t)
	}
	fetch := filepath.Join(root, "hack", "vm", "guest-kernel.sh")
	if exec.Command(fetch, "--print").Run() != nil {
		// guest-kernel.sh bounds its own downloads; this is a backstop.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
		defer cancel()
		b, err := exec.CommandContext(ctx, fetch).CombinedOutput()
		if err != nil {
			testutil.SkipOrFail(t, "no guest kernel (%v): %s; run hack/deps.sh vm", err, strings.TrimSpace(string(b)))
		}
	}
	return &VM{t: t, opts: opts, root: root, Dir: t.TempDir(), env: environment(fetch)}
}

// environment names what a VM test's result depends on besides the code:
// the host's kernel, qemu's version, and the guest kernel with whether it
// is the pinned one (guest-kernel.sh --describe).
func environment(fetch string) string {
	host := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		host = strings.TrimSpace(string(b))
	}
	firstLine := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).Output()
		if exit := (*exec.ExitError)(nil); errors.As(err, &exit) && len(exit.Stderr) > 0 {
			b, err = exit.Stderr, nil
		}
		if err != nil {
			return fmt.Sprintf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return line
	}
	return fmt.Sprintf("host kernel %s; %s; %s", host,
		firstLine("qemu-system-x86_64", "--version"), firstLine(fetch, "--describe"))
}

// repoRoot is the directory of xdpipe's go.mod, above the test's working
// directory (its package directory under go test).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "hack", "vm", "run.sh")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("vmtest: no hack/vm/run.sh above %s: run the tests inside xdpipe's source tree", dir)
		}
	}
}

// Path is the absolute path of rel, a path relative to the repository root
// (e.g. "hack/vm/rdma/rxe-up.sh").
func (v *VM) Path(rel string) string { return filepath.Join(v.root, rel) }

// Copy copies files (paths relative to the repository root, or absolute)
// into the results directory under their base names, keeping their mode.
func (v *VM) Copy(files ...string) {
	v.t.Helper()
	for _, f := range files {
		if !filepath.IsAbs(f) {
			f = v.Path(f)
		}
		st, err := os.Stat(f)
		if err != nil {
			v.t.Fatalf("vmtest: copy: %v", err)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			v.t.Fatalf("vmtest: copy: %v", err)
		}
		if err := os.WriteFile(filepath.Join(v.Dir, filepath.Base(f)), b, st.Mode().Perm()); err != nil {
			v.t.Fatalf("vmtest: copy: %v", err)
		}
	}
}

// BuildTest builds pkg's tests (go test -c, pkg relative to the repository
// root, e.g. "./xsk") into the results directory as name.
func (v *VM) BuildTest(pkg, name string, tags ...string) {
	v.t.Helper()
	v.goCmd("test", "-c", pkg, name, tags)
}

// Build builds the command pkg (e.g. "./cmd/xdpipe") into the results
// directory as name.
func (v *VM) Build(pkg, name string, tags ...string) {
	v.t.Helper()
	v.goCmd("build", "", pkg, name, tags)
}

func (v *VM) goCmd(verb, flag, pkg, name string, tags []string) {
	v.t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(v.t, "no go binary in PATH to build %s for the VM", pkg)
	}
	args := []string{verb}
	if flag != "" {
		args = append(args, flag)
	}
	for _, tag := range tags {
		args = append(args, "-tags", tag)
	}
	args = append(args, "-o", filepath.Join(v.Dir, name), pkg)
	cmd := exec.Command(goBin, args...)
	cmd.Dir = v.root
	if b, err := cmd.CombinedOutput(); err != nil {
		v.t.Fatalf("vmtest: go %v: %v\n%s", args, err, b)
	}
}

// Run boots the VM and runs command (a program and its arguments, relative
// paths to the results directory) in it, chrooted in the host's root as
// root, with the results directory as working directory. It logs the
// runner's and the command's output with t.Log as it comes, and returns an
// error naming the exit status and the console log when the command failed,
// timed out or the VM did not come up.
func (v *VM) Run(command ...string) error {
	v.t.Helper()
	args := []string{
		"--nics", strconv.Itoa(v.opts.NICs),
		"--queues", strconv.Itoa(v.opts.Queues),
		"--timeout", strconv.Itoa(int(v.opts.Timeout / time.Second)),
		"--out", v.Dir,
	}
	if v.opts.NoIOMMUNIC {
		args = append(args, "--noiommu-nic")
	}
	if v.opts.HashReport {
		args = append(args, "--hash-report")
	}
	args = append(append(args, "--"), command...)
	v.t.Logf("vm: %s", v.env)
	cmd := exec.CommandContext(v.t.Context(), v.Path("hack/vm/run.sh"), args...)
	// run.sh kills qemu and removes its network namespace on SIGTERM:
	// on a cancelled test, and when this process dies (go test's own
	// timeout: Pdeathsig, sent when the thread that started it exits,
	// which for a test goroutine that never locked its thread is when the
	// process does), never SIGKILL first.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("vm: start hack/vm/run.sh: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			v.t.Log(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr) // a line longer than 1 MiB: drain the rest
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	if err == nil {
		return nil
	}
	console := filepath.Join(v.Dir, "console.log")
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case 124:
			return fmt.Errorf("vm: timed out after %v (console log: %s)", v.opts.Timeout, console)
		case 125:
			return fmt.Errorf("vm: the VM failed before the command reported (console log: %s)", console)
		}
	}
	return fmt.Errorf("vm: %v: %w (console log: %s)", command, err, console)
}
