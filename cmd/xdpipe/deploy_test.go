package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// The deployment files (deploy/): the systemd unit and the container
// image, each run with exactly the capabilities it grants.

const unitFile = "../../deploy/systemd/xdpipe@.service"

// unitSettings reads the unit's settings: every value of every key.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			kv[k] = append(kv[k], v)
		}
	}
	return kv
}

// mountBpffs mounts a bpffs of the test's own, for pins, and unmounts it
// at the end.
func mountBpffs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// unitConfig writes a config for run on p's B end: the steering rules
// (which need CAP_PERFMON), count and macswap, pins under pinDir, and a
// UMEM of 4 MiB (ring 256), within the default 8 MiB RLIMIT_MEMLOCK, so
// no CAP_IPC_LOCK is needed. Paths are as xdpipe will see them
// (in: the directory's path there).
func unitConfig(t *testing.T, p *testutil.LinkPair, dir, in, pinDir string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, p.B.Name+".yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`interfaces: [%s]
ring: 256
poll: wakeup
rules: %s
pin_dir: %s
metrics: "off"
interval: 0s
stages: [count, macswap]
`, p.B.Name, filepath.Join(in, "rules.yaml"), pinDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// l2fwdEveryFrame sends n frames through a started `xdpipe run` with the
// unitConfig, at most 128 outstanding, requires every one back, stops it
// with SIGTERM and requires every frame accounted for.
func l2fwdEveryFrame(t *testing.T, p *testutil.LinkPair, back *testutil.PacketSocket, proc *runProc, n int) {
	t.Helper()
	sendFrames(t, back, p, n, 128, back.Received)
	waitBack(t, back, int64(n))
	out, code := proc.stop(t, syscall.SIGTERM)
	if code != 0 || !regexp.MustCompile(`all \d+ frames accounted for`).MatchString(out) ||
		!strings.Contains(out, fmt.Sprintf("queue 0: received %d, transmitted %d", n, n)) {
		t.Fatalf("exit %d, want 0 and %d frames received and transmitted, all accounted for:\n%s", code, n, out)
	}
	noXDP(t, &p.B)
}

// TestSystemdUnit: systemd-analyze verify takes the unit with nothing to
// say, and xdpipe run as the unit starts it (root with only its
// capabilities, no new privileges, bpffs mounted) forwards every frame;
// with any one of those capabilities left out it refuses in one line that
// names it and the unit's settings.
func TestSystemdUnit(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "systemd-analyze", "setpriv", "unshare")
	kv := unitSettings(t)
	if got := kv["ExecStart"]; !slices.Equal(got, []string{"/usr/local/bin/xdpipe run --config /etc/xdpipe/%I.yaml"}) {
		t.Errorf("ExecStart %q", got)
	}
	capSet := strings.Fields(strings.Join(kv["CapabilityBoundingSet"], " "))
	if amb := strings.Fields(strings.Join(kv["AmbientCapabilities"], " ")); !slices.Equal(capSet, amb) || len(capSet) == 0 {
		t.Fatalf("CapabilityBoundingSet %q and AmbientCapabilities %q differ", capSet, amb)
	}
	// Without CAP_IPC_LOCK the UMEMs count against RLIMIT_MEMLOCK.
	if !slices.Contains(capSet, "CAP_IPC_LOCK") && !slices.Equal(kv["LimitMEMLOCK"], []string{"infinity"}) {
		t.Errorf("no CAP_IPC_LOCK and LimitMEMLOCK %q", kv["LimitMEMLOCK"])
	}

	t.Run("verify", func(t *testing.T) {
		// An instance of the template, in a private mount namespace where
		// ExecStart's binary is the one under test.
		dir := t.TempDir()
		b, err := os.ReadFile(unitFile)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "xdpipe@.service"), b, 0o644)
		}
		if err == nil {
			err = os.Symlink("xdpipe@.service", filepath.Join(dir, "xdpipe@xdpt0.service"))
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-ec",
			`mount -t tmpfs xdpipe-test /usr/local/bin; cp "$1" /usr/local/bin/xdpipe; systemd-analyze verify "$2"`,
			"sh", xdpipeBin, filepath.Join(dir, "xdpipe@xdpt0.service")).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	dir := t.TempDir()
	cfg := unitConfig(t, p, dir, dir, filepath.Join(mountBpffs(t), "xdpipe"))
	// asUnit runs xdpipe run as the unit would with the capabilities
	// given (setpriv's names): $INVOCATION_ID says systemd.
	asUnit := func(capNames []string) *exec.Cmd {
		set := "-all,+" + strings.Join(capNames, ",+")
		cmd := exec.Command("ip", "netns", "exec", p.B.NS.Name, "setpriv", "--no-new-privs",
			"--bounding-set="+set, "--inh-caps="+set, "--ambient-caps="+set, xdpipeBin, "run", "--config", cfg)
		cmd.Env = shellEnv("INVOCATION_ID=0123456789abcdef")
		return cmd
	}
	var names []string
	for _, c := range capSet {
		names = append(names, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}

	t.Run("forwards", func(t *testing.T) {
		back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
		proc := startProc(t, asUnit(names), "run: ready", "run")
		l2fwdEveryFrame(t, p, back, proc, testutil.Frames(2000))
	})

	t.Run("without", func(t *testing.T) {
		for i, c := range capSet {
			cmd := asUnit(slices.Delete(slices.Clone(names), i, i+1))
			b, _ := cmd.CombinedOutput()
			out := string(b)
			want := "add " + c + " to AmbientCapabilities= and CapabilityBoundingSet= of "
			if cmd.ProcessState.ExitCode() != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "missing capability "+c+" (") || !strings.Contains(out, want) {
				t.Errorf("without %s: exit %d, want 1 and one line naming it and %q:\n%s", c, cmd.ProcessState.ExitCode(), want, out)
			}
		}
		noXDP(t, &p.B)
	})
}

// podman runs podman on its own storage under dir, with what a host on a
// hybrid cgroup v1 layout needs: runc (crun refuses that layout) and
// cgroupfs.
func podman(dir string, args ...string) *exec.Cmd {
	return exec.Command("podman", append([]string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"),
		"--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"}, args...)...)
}

// TestContainerImage builds the image (deploy/container) from the static
// binary and runs rxdrop and run in it on the test's veth pair, sharing the
// B end's namespace as host networking shares the host's, with only the
// capabilities deploy/README.md lists and its seccomp profile: every frame
// arrives. Without a capability, or under podman's default seccomp profile,
// it fails in one line that says what to add.
func TestContainerImage(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "podman", "runc", "jq")
	dir := t.TempDir()
	start := time.Now()
	// The context: the binary under test, static as TestMain builds it.
	ctx := filepath.Join(dir, "context")
	if f, err := elf.Open(xdpipeBin); err != nil {
		t.Fatal(err)
	} else if slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		f.Close()
		t.Fatalf("%s is dynamically linked: the image has no C library (build with CGO_ENABLED=0)", xdpipeBin)
	} else {
		f.Close()
	}
	b, err := os.ReadFile(xdpipeBin)
	if err == nil {
		err = os.Mkdir(ctx, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(ctx, "xdpipe"), b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	const image = "localhost/xdpipe-test:latest"
	if out, err := podman(dir, "build", "-q", "-t", image, "-f", "../../deploy/container/Containerfile", ctx).CombinedOutput(); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := podman(dir, "rmi", "-f", image).CombinedOutput(); err != nil {
			t.Errorf("podman rmi: %v\n%s", err, out)
		}
	})
	seccomp := filepath.Join(dir, "seccomp.json")
	prof, err := exec.Command("../../deploy/container/seccomp.sh").Output()
	if err == nil {
		err = os.WriteFile(seccomp, prof, 0o644)
	}
	if err != nil {
		t.Fatalf("deploy/container/seccomp.sh: %v", err)
	}
	t.Logf("image built in %v", time.Since(start).Round(time.Millisecond))

	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	// run starts the image's xdpipe with args, in the B end's namespace,
	// with capabilities capAdd and podman's options opts.
	run := func(capAdd string, opts []string, args ...string) *exec.Cmd {
		a := []string{"run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
			"--network", "ns:/run/netns/" + p.B.NS.Name, "--cap-drop", "all", "--cap-add", capAdd}
		a = append(append(a, opts...), image)
		return podman(dir, append(a, args...)...)
	}
	withSeccomp := []string{"--security-opt", "seccomp=" + seccomp}

	t.Run("rxdrop", func(t *testing.T) {
		// Deep rings, as TestRxdropCountsExactly: 128 MiB of UMEM, pinned
		// with CAP_IPC_LOCK (beyond the default 8 MiB RLIMIT_MEMLOCK, which
		// the test does not raise).
		proc := startProc(t, run("BPF,NET_ADMIN,NET_RAW,IPC_LOCK", withSeccomp, "rxdrop", "--iface", p.B.Name,
			"--poll", "wakeup", "--ring", "8192", "--frames", "32768", "--interval", "20ms"), "rxdrop: ", "rxdrop")
		count := uint64(testutil.Frames(10000))
		if out, code := xdpipeIn(t, p.A.NS, genFrom(p, int(count), "50k")...); code != 0 {
			t.Fatalf("gen exited %d:\n%s", code, out)
		}
		waitGenerated(t, proc, count, nil)
		out, code := proc.stop(t, syscall.SIGINT)
		if code != 0 {
			t.Fatalf("rxdrop exited %d after SIGINT:\n%s", code, out)
		}
		// Without CAP_PERFMON the XDP program cannot count them: the
		// loop does, and the start line says so.
		if !strings.Contains(out, "counted in the loop: counting them in XDP needs CAP_PERFMON") {
			t.Errorf("rxdrop without CAP_PERFMON does not say where it counts generated frames:\n%s", out)
		}
		if rx, uniq, lost := tracked(t, out); rx != count || uniq != count || lost != 0 {
			t.Errorf("rxdrop in the container saw %d generated frames (%d unique, %d lost), gen sent %d\n%s", rx, uniq, lost, count, out)
		}
		noXDP(t, &p.B)
	})

	t.Run("run", func(t *testing.T) {
		cfgDir := t.TempDir()
		unitConfig(t, p, cfgDir, "/etc/xdpipe", "/sys/fs/bpf/xdpipe")
		opts := append([]string{"-v", cfgDir + ":/etc/xdpipe:ro", "-v", mountBpffs(t) + ":/sys/fs/bpf"}, withSeccomp...)
		back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
		proc := startProc(t, run("BPF,NET_ADMIN,NET_RAW,PERFMON", opts, "run", "--config", "/etc/xdpipe/"+p.B.Name+".yaml"), "run: ready", "run")
		l2fwdEveryFrame(t, p, back, proc, testutil.Frames(2000))
	})

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			capAdd string
			opts   []string
			want   string
		}{
			{"BPF,NET_ADMIN", withSeccomp, "missing capability CAP_NET_RAW (needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW to load and attach XDP programs and open AF_XDP sockets); add it to the container: --cap-add NET_RAW"},
			{"BPF,NET_ADMIN,NET_RAW", nil, "bpf(2) refused with CAP_BPF held: a seccomp filter forbids it"},
		} {
			cmd := run(tc.capAdd, tc.opts, "rxdrop", "--iface", p.B.Name, "--frames", "2048", "--ring", "512", "--duration", "1s")
			b, _ := cmd.CombinedOutput()
			out := string(b)
			if cmd.ProcessState.ExitCode() != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("--cap-add %s %v: exit %d, want 1 and one line with %q:\n%s", tc.capAdd, tc.opts, cmd.ProcessState.ExitCode(), tc.want, out)
			}
		}
		noXDP(t, &p.B)
	})
}
