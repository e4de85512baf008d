package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
)

// The fault-injection suite: each scenario on a veth testbed,
// with the real binary.

const gateRules = "rules:\n  - priority: 10\n    name: gen\n    proto: udp\n    dport: 9\n    action: redirect\n"

// TestSecondInstanceIsRefused: a second run on an interface a live
// instance holds (another queue, other rules that drop everything) is
// refused before it touches anything: the first one's pins, rules and
// program stay, and it stops cleanly. So is a rules attach.
func TestSecondInstanceIsRefused(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{Queues: 2})
	pinDir := bpffsDir(t)
	first := writeFile(t, "first.yaml", gateRules)
	other := writeFile(t, "other.yaml", "default: drop\nrules:\n  - priority: 5\n    name: other\n    proto: tcp\n    action: drop\n")
	a := startRun(t, p.B.NS, "--iface", p.B.Name, "--queues", "0", "--stages", "count", "--metrics", "off",
		"--rules", first, "--pin-dir", pinDir)
	pin := pinOf(t, &p.B, pinDir)

	out, code := xdpipeIn(t, p.B.NS, "run", "--iface", p.B.Name, "--queues", "1", "--stages", "count", "--metrics", "off",
		"--rules", other, "--pin-dir", pinDir)
	if code != 1 || !strings.Contains(out, "held by another xdpipe instance") || strings.Count(strings.TrimSpace(out), "\n") > 0 &&
		!strings.Contains(out, "level=") {
		t.Errorf("second run: exit %d, want 1 naming the owner:\n%s", code, out)
	}
	out, code = xdpipeIn(t, p.B.NS, "rules", "attach", "--iface", p.B.Name, "--pin-dir", filepath.Join(pinDir, "other"), "--file", other)
	if code != 1 || !strings.Contains(out, "held by another xdpipe instance") {
		t.Errorf("rules attach: exit %d, want 1 naming the owner:\n%s", code, out)
	}
	out, code = xdpipeIn(t, p.B.NS, "rules", "detach", "--pin", pin)
	if code != 1 || !strings.Contains(out, "held by another xdpipe instance") {
		t.Errorf("rules detach of a running instance's pins: exit %d, want 1:\n%s", code, out)
	}
	out, code = xdpipeIn(t, nil, "rules", "list", "--pin", pin)
	if code != 0 || !strings.Contains(out, "gen") || strings.Contains(out, "other") {
		t.Errorf("the first instance's rules after the refusals: exit %d:\n%s", code, out)
	}
	if !testutil.XDPAttached(p.B.NS.MustRun(t, "ip", "link", "show", "dev", p.B.Name)) {
		t.Error("the first instance's program is gone")
	}
	if out, code := a.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("first run exited %d:\n%s", code, out)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pins left after a clean stop: %v", err)
	}
	noXDP(t, &p.B)
}

// TestKilledInstanceIsCleanedOnRestart: kill -9 leaves the rule maps'
// pins (the program went with the process); the next run finds the dead
// owner, removes them, says so, and starts.
func TestKilledInstanceIsCleanedOnRestart(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	pinDir := bpffsDir(t)
	rules := writeFile(t, "rules.yaml", gateRules)
	args := []string{"--iface", p.B.Name, "--stages", "count", "--metrics", "off", "--rules", rules, "--pin-dir", pinDir}
	a := startRun(t, p.B.NS, args...)
	pin := pinOf(t, &p.B, pinDir)
	if out, code := a.stop(t, syscall.SIGKILL); code == 0 {
		t.Fatalf("kill -9: exit 0:\n%s", out)
	}
	if _, err := os.Stat(pin); err != nil {
		t.Fatalf("no pins left by the killed instance to clean (%v): the test tests nothing", err)
	}
	noXDP(t, &p.B)
	b := startRun(t, p.B.NS, args...)
	out, code := b.stop(t, syscall.SIGINT)
	if code != 0 || !strings.Contains(out, "took the interface over from a dead instance") || !strings.Contains(out, "removed its pins") {
		t.Fatalf("restart after kill -9: exit %d, want the dead owner reported:\n%s", code, out)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pins left after a clean stop: %v", err)
	}
	noXDP(t, &p.B)
}

// detachXDPLinkOf detaches the XDP bpf_link process pid holds (found in
// its fdinfo, so no other process's program is touched), as `bpftool link
// detach` would: someone else removing the program.
func detachXDPLinkOf(t *testing.T, pid int) {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil || !strings.Contains(string(b), "link_type:\txdp") {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "link_id:"); ok {
				id, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
				l, err := link.NewFromID(link.ID(id))
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				if err := l.Detach(); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
	}
	t.Fatalf("pid %d holds no XDP link", pid)
}

// TestLostDataPathStopsWithTheCause: run and rxdrop exit non-zero, naming
// the cause, when their interface is deleted under them, or their XDP
// program detached by someone else; they never run on at 0 pps.
func TestLostDataPathStopsWithTheCause(t *testing.T) {
	for _, c := range []struct {
		ready string
		args  []string
	}{
		{"run: ready", []string{"run", "--stages", "count", "--metrics", "off", "--iface"}},
		{"rxdrop:", []string{"rxdrop", "--poll", "wakeup", "--iface"}},
	} {
		t.Run(c.args[0]+"/deleted", func(t *testing.T) {
			testutil.RequireVeth(t, "the test deletes the interface")
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			r := startXdpipe(t, p.B.NS, c.ready, append(c.args, p.B.Name)...)
			p.A.NS.MustRun(t, "ip", "link", "del", p.A.Name) // takes its peer, the interface, with it
			out, code := r.wait(t)
			if code != 1 || !strings.Contains(out, "data path lost: interface "+p.B.Name) || !strings.Contains(out, "was deleted") {
				t.Fatalf("exit %d, want 1 with the cause:\n%s", code, out)
			}
		})
		t.Run(c.args[0]+"/detached", func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			r := startXdpipe(t, p.B.NS, c.ready, append(c.args, p.B.Name)...)
			detachXDPLinkOf(t, r.cmd.Process.Pid)
			out, code := r.wait(t)
			if code != 1 || !strings.Contains(out, "data path lost: the XDP program") || !strings.Contains(out, "removed by someone else") {
				t.Fatalf("exit %d, want 1 with the cause:\n%s", code, out)
			}
			noXDP(t, &p.B)
		})
	}
}

// TestOOMSizedConfigRefusedByCheckFirst: sizes the machine cannot hold are
// refused in one line naming the setting: by run --check, and only then
// (never the other way round: run must not be tried unvalidated) by run,
// before it allocates. A sound config passes --check, which says what it
// costs: one socket of the default ring, 4 x 2048 frames of 4096 bytes
// (32 MiB of UMEM) and 144 KiB of rings, and with rules the steering
// program's maps.
func TestOOMSizedConfigRefusedByCheckFirst(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	base := "interfaces: [" + p.B.Name + "]\nqueues: 0\nmetrics: \"off\"\n"
	good := writeFile(t, "good.yaml", base+"stages: [count]\n")
	if out, code := xdpipeIn(t, p.B.NS, "run", "--check", "--config", good); code != 0 || !strings.Contains(out, "configuration OK") ||
		!strings.Contains(out, "memory 32.1 MiB (UMEM 32.0 MiB, locked)") {
		t.Fatalf("run --check of a sound config: exit %d, want OK and memory 32.1 MiB (UMEM 32.0 MiB, locked):\n%s", code, out)
	}
	// With rules, the steering program's maps too, sized for this
	// machine's possible CPUs.
	steer, err := bpf.SteerMemory(ebpf.MustPossibleCPU())
	if err != nil {
		t.Fatal(err)
	}
	ruled := writeFile(t, "ruled.yaml", base+"rules: "+writeFile(t, "steer.yaml", "rules: [{priority: 1, proto: udp, action: redirect}]\n")+"\nstages: [count]\n")
	want := fmt.Sprintf("memory %s (UMEM 32.0 MiB, locked)", xsk.Bytes(32<<20+144<<10+steer))
	if out, code := xdpipeIn(t, p.B.NS, "run", "--check", "--config", ruled); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("run --check of a config with rules: exit %d, want OK and %s:\n%s", code, want, out)
	}
	for _, c := range []struct{ name, body, setting string }{
		{"ring", base + "ring: 1073741824\nstages: [count]\n", "ring:"},
		{"sample", base + "stages:\n  - sample: {every: 1, depth: 100000000, snaplen: 100000000}\n", "stage sample (line 5) depth × snaplen:"},
	} {
		cfg := writeFile(t, c.name+".yaml", c.body)
		for _, args := range [][]string{{"run", "--check", "--config", cfg}, {"run", "--config", cfg}} {
			out, code := xdpipeIn(t, p.B.NS, args...)
			line := strings.TrimSpace(out)
			if code != 1 || strings.Contains(line, "\n") || !strings.HasPrefix(line, "xdpipe run: "+c.setting) {
				t.Fatalf("%s: exit %d, want 1 and one line naming %q:\n%s", strings.Join(args, " "), code, c.setting, out)
			}
		}
	}
	out, code := xdpipeIn(t, p.B.NS, "rxdrop", "--iface", p.B.Name, "--ring", "1073741824", "--frames", "4294967295", "--batch", "64")
	if code != 1 || !strings.Contains(out, "--frames: the configuration needs") {
		t.Fatalf("rxdrop with OOM-sized --ring and --frames: exit %d:\n%s", code, out)
	}
	noXDP(t, &p.B)
}

// procStat reads a process's resident memory (bytes) and open fds.
func procStat(t *testing.T, pid int) (rss uint64, fds int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return rss, len(ents)
}

// TestSIGHUPStormKeepsEverything: 1,000 reloads under traffic with a
// sample and a pcap stage lose no frame, leak no goroutine, fd or memory,
// keep the counters monotonic (the worker's and the stages'), and leave one
// capture file holding every frame.
func TestSIGHUPStormKeepsEverything(t *testing.T) {
	const reloads, frames = 1000, 30000
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	dir := t.TempDir()
	rulesFile := writeFile(t, "rules.yaml", testRules)
	capFile := filepath.Join(dir, "storm.pcap")
	cfg := writeFile(t, "run.yaml", fmt.Sprintf("interfaces: [%s]\nrules: %s\nstages:\n  - count\n  - sample: {every: 10}\n"+
		"  - pcap: {path: %s, snaplen: 64}\n  - macswap\n", p.B.Name, rulesFile, capFile))
	addr := freePort(t, p.B.NS)
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	proc := startRun(t, p.B.NS, "--config", cfg, "--metrics", addr, "--poll", "wakeup", "--interval", "0s")
	pid := proc.cmd.Process.Pid
	reload := func() {
		proc.cmd.Process.Signal(syscall.SIGHUP)
		for line := range proc.lines {
			if line == "run: reloaded" {
				return
			}
		}
	}
	// The worker's and the count stage's counters: neither goes back.
	counters := func() [2]float64 {
		body := scrape(t, p.B.NS, addr)
		return [2]float64{metric(t, body, "xdpipe_rx_packets_total"), metric(t, body, "xdpipe_stage_packets_total", `stage="count"`)}
	}
	for range 20 { // warm up: what a first reload sets up once is no leak
		reload()
	}
	// Frames before the baseline too: the socket's first Wait puts it in
	// the Go runtime's netpoller (a duplicate fd), and its first Wait after
	// it transmitted takes it out again (xsk.Socket.Wait). The baseline is
	// the socket past both.
	const warm = 100
	sendFrames(t, back, p, warm, 128, back.Received)
	waitBack(t, back, warm)
	body := scrape(t, p.B.NS, addr)
	g0 := metric(t, body, "go_goroutines")
	rss0, fds0 := procStat(t, pid)

	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sendFlows(t, back, p, warm, frames, 128, 1, back.Received)
	}()
	last := counters()
	for i := range reloads {
		reload()
		if i%50 == 0 {
			now := counters()
			if now[0] < last[0] || now[1] < last[1] {
				t.Fatalf("counters went back: rx and count stage %v, then %v", last, now)
			}
			last = now
		}
	}
	<-sent
	waitBack(t, back, warm+frames)
	if got := counters(); got[1] != warm+frames {
		t.Errorf("the count stage exports %v frames across the reloads, want %d", got[1], warm+frames)
	}
	// Goroutines that end on their own lag the reload that ends them: the
	// old sample stages' slow paths drain their channel, a scrape's
	// connection closes. Wait for them (a leak of one per reload would
	// stay 1,000 above).
	var g1 float64
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if g1 = metric(t, scrape(t, p.B.NS, addr), "go_goroutines"); g1 > g0+2 {
			return fmt.Errorf("leak over %d reloads: goroutines %v -> %v", reloads, g0, g1)
		}
		return nil
	})
	rss1, fds1 := procStat(t, pid)
	t.Logf("%d reloads under %d frames, none lost: goroutines %v -> %v, RSS %d -> %d KiB, fds %d -> %d",
		reloads, frames, g0, g1, rss0>>10, rss1>>10, fds0, fds1)
	if g1 > g0+2 || fds1 != fds0 || rss1 > rss0+16<<20 {
		t.Errorf("leak over %d reloads: goroutines %v -> %v, fds %d -> %d, RSS %d -> %d KiB", reloads, g0, g1, fds0, fds1, rss0>>10, rss1>>10)
	}
	out, code := proc.stop(t, syscall.SIGINT)
	if code != 0 || !strings.Contains(out, "frames accounted for") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "storm*.pcap"))
	if len(files) != 1 {
		t.Fatalf("capture files %v, want the one continued", files)
	}
	f, err := os.Open(capFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if _, _, err := r.ReadPacketData(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: record %d: %v", capFile, n, err)
		}
	}
	if n != warm+frames {
		t.Errorf("%s holds %d records, want all %d frames", capFile, n, warm+frames)
	}
}

// TestCheckCreatesNothing: run --check validates capture paths without
// creating a file, attaches nothing, and refuses an unwritable path.
func TestCheckCreatesNothing(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	dir := t.TempDir()
	cfg := func(path string) string {
		return writeFile(t, "check.yaml", fmt.Sprintf("interfaces: [%s]\nmetrics: \"off\"\nstages:\n  - sample\n  - pcap: {path: %s}\n", p.B.Name, path))
	}
	if out, code := xdpipeIn(t, p.B.NS, "run", "--check", "--config", cfg(filepath.Join(dir, "cap.pcap"))); code != 0 {
		t.Fatalf("run --check: exit %d:\n%s", code, out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("run --check created %v", ents)
	}
	noXDP(t, &p.B)
	out, code := xdpipeIn(t, p.B.NS, "run", "--check", "--config", cfg(filepath.Join(dir, "no", "such", "cap.pcap")))
	if code != 1 || !strings.Contains(out, "stage pcap (line 5)") {
		t.Fatalf("run --check of an unwritable capture path: exit %d:\n%s", code, out)
	}
}

// TestRunFlagsAreNotTruncated: negative durations and a ring that does not
// fit are refused, naming the flag, instead of running on another value.
func TestRunFlagsAreNotTruncated(t *testing.T) {
	for _, args := range [][]string{{"--interval", "-1s"}, {"--duration", "-2s"}, {"--ring", "4294967360"}} {
		if _, err := parseRunFlags(args, io.Discard); err == nil || !strings.Contains(err.Error(), args[0]+" ") {
			t.Errorf("%v: %v, want the flag named", args, err)
		}
	}
}

// TestFailingCPUProfileIsAnError: a profile that cannot be written (a full
// disk) fails the command instead of vanishing.
func TestFailingCPUProfileIsAnError(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	stop, err := startCPUProfile("/dev/full")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1e6; i++ { // something to profile
		_ = strconv.Itoa(i)
	}
	if err := stop(); err == nil || !strings.Contains(err.Error(), "/dev/full") {
		t.Fatalf("profile to /dev/full: %v", err)
	}
}

// TestRxdropNamesTheFlag: a bad --ring is named as such, not as the
// --batch or fill ring it would upset.
func TestRxdropNamesTheFlag(t *testing.T) {
	for _, args := range [][]string{{"--ring", "3"}, {"--ring", "3", "--batch", "2", "--frames", "64"}, {"--ring", "100"}} {
		if _, err := parseRxdrop(append([]string{"--iface", "x"}, args...), io.Discard); err == nil || !strings.HasPrefix(err.Error(), "--ring ") {
			t.Errorf("%v: %v, want --ring named", args, err)
		}
	}
}

// TestRulesUnknownSubcommandFirst: a wrong subcommand is named as such,
// whether or not an instance runs.
func TestRulesUnknownSubcommandFirst(t *testing.T) {
	out, code := xdpipeIn(t, nil, "rules", "bogus")
	if code != 1 || !strings.Contains(out, `unknown subcommand "bogus"`) {
		t.Fatalf("rules bogus: exit %d:\n%s", code, out)
	}
}

// TestUnprivilegedCommandsSayNeedsRoot: every command that needs
// privileges says so in one form, "missing capability CAP_... (needs
// ...); run with sudo", naming the capabilities, instead of a misleading
// error from deeper down.
func TestUnprivilegedCommandsSayNeedsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setpriv")
	dir, err := os.MkdirTemp("", "xdpipe-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "xdpipe")
	b, err := os.ReadFile(xdpipeBin)
	if err == nil {
		err = os.WriteFile(bin, b, 0o755)
	}
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"rules", "list"}, {"rules", "detach"}, {"rules", "attach", "--iface", "lo"},
		{"gen", "--iface", "lo", "--dst-mac", "02:00:00:00:00:01", "--dst-ip", "198.18.0.1", "--count", "1"},
		{"rxdrop", "--iface", "lo"}, {"run", "--iface", "lo", "--stages", "count"}, {"run", "--check", "--iface", "lo", "--stages", "count"},
	} {
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		cmd.Env = shellEnv()
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "missing capability CAP_") || !strings.HasSuffix(string(out), "; run with sudo\n") {
			t.Errorf("%s as nobody: exit %d, want 1 and missing capability CAP_...; run with sudo:\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), out)
		}
	}
}

// startReflectingRun starts run on end B of p with the gate rules, pins
// under pinDir, and count and macswap, so the frames it receives come back
// to A; it returns the process and A's socket counting them.
func startReflectingRun(t *testing.T, p *testutil.LinkPair, pinDir string) (*runProc, *testutil.PacketSocket) {
	t.Helper()
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	r := startRun(t, p.B.NS, "--iface", p.B.Name, "--stages", "count,macswap", "--metrics", "off", "--poll", "wakeup",
		"--rules", writeFile(t, "gate.yaml", gateRules), "--pin-dir", pinDir)
	return r, back
}

// reflects sends n frames from A of p and waits until all came back
// through the instance on B.
func reflects(t *testing.T, p *testutil.LinkPair, back *testutil.PacketSocket, n int) {
	t.Helper()
	first := int(back.Received())
	sendFlows(t, back, p, first, n, 32, 1, back.Received)
	waitBack(t, back, int64(first+n))
}

// TestSameNameInTwoNamespacesSharesNoPins: two namespaces, each with an
// interface of the same name, share one bpffs (as two containers mounting
// the host's /sys/fs/bpf do). Each run keeps maps of its own: each
// reflects its own frames, and stopping the second leaves the first's
// pins and frames alone.
func TestSameNameInTwoNamespacesSharesNoPins(t *testing.T) {
	p1 := testutil.NewLinkPair(t, testutil.LinkOptions{})
	p2 := testutil.NewLinkPair(t, testutil.LinkOptions{})
	if p1.B.Name != p2.B.Name {
		t.Fatalf("the pairs' ends are named %s and %s: the test needs one name", p1.B.Name, p2.B.Name)
	}
	pinDir := bpffsDir(t)
	const n = 200
	a, back1 := startReflectingRun(t, p1, pinDir)
	b, back2 := startReflectingRun(t, p2, pinDir)
	reflects(t, p1, back1, n)
	reflects(t, p2, back2, n)
	if out, code := b.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("second run exited %d:\n%s", code, out)
	}
	reflects(t, p1, back1, n)
	if out, code := xdpipeIn(t, p1.B.NS, "rules", "list", "--iface", p1.B.Name, "--pin-dir", pinDir); code != 0 || !strings.Contains(out, "gen") {
		t.Errorf("the first instance's rules after the second stopped: exit %d:\n%s", code, out)
	}
	if out, code := a.stop(t, syscall.SIGINT); code != 0 || !strings.Contains(out, fmt.Sprintf("queue 0: received %d,", 2*n)) {
		t.Fatalf("first run: exit %d, want %d frames received:\n%s", code, 2*n, out)
	}
	if ents, _ := os.ReadDir(pinDir); len(ents) != 0 {
		t.Errorf("pins left after both stopped: %v", ents)
	}
}

// TestRenamedInterfaceKeepsItsPins: an interface renamed under a running
// instance (down, rename, up, as udev or a CNI plugin does) keeps its
// maps: a second run on a new interface with the old name gets maps of its
// own, and the first one goes on reflecting its frames.
func TestRenamedInterfaceKeepsItsPins(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	pinDir := bpffsDir(t)
	const n = 200
	a, back := startReflectingRun(t, p, pinDir)
	pin := pinOf(t, &p.B, pinDir)
	reflects(t, p, back, n)
	p.B.NS.Batch(t, "link set "+p.B.Name+" down", "link set "+p.B.Name+" name xdpold", "link set xdpold up",
		"link add "+p.B.Name+" type veth peer name xdpnew", "link set "+p.B.Name+" up", "link set xdpnew up")
	b := startRun(t, p.B.NS, "--iface", p.B.Name, "--stages", "count", "--metrics", "off", "--poll", "wakeup",
		"--rules", writeFile(t, "gate.yaml", gateRules), "--pin-dir", pinDir)
	reflects(t, p, back, n)
	if out, code := b.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("the run on the new %s exited %d:\n%s", p.B.Name, code, out)
	}
	if out, code := xdpipeIn(t, nil, "rules", "list", "--pin", pin); code != 0 || !strings.Contains(out, "gen") {
		t.Errorf("the first instance's rules after the second stopped: exit %d:\n%s", code, out)
	}
	reflects(t, p, back, n)
	if out, code := a.stop(t, syscall.SIGINT); code != 0 || !strings.Contains(out, fmt.Sprintf("queue 0: received %d,", 3*n)) {
		t.Fatalf("the run on the renamed interface: exit %d, want %d frames received:\n%s", code, 3*n, out)
	}
}

// ownerRecordOf returns the owner record file of the xdpipe process pid.
func ownerRecordOf(t *testing.T, pid int) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(bpf.DefaultOwnerDir, "*.owner"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), fmt.Sprintf(`"pid":%d,`, pid)) {
			return f
		}
	}
	t.Fatalf("no owner record of pid %d in %s", pid, bpf.DefaultOwnerDir)
	return ""
}

// TestStaleRecordRemovesNothingOfOthers: a dead owner's record naming a
// pin directory that is not xdpipe's (a directory of files, not on a
// bpffs) makes the next run remove nothing there: it starts, and the
// files stay.
func TestStaleRecordRemovesNothingOfOthers(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	pinDir := bpffsDir(t)
	args := []string{"--iface", p.B.Name, "--stages", "count", "--metrics", "off", "--rules", writeFile(t, "gate.yaml", gateRules), "--pin-dir", pinDir}
	a := startRun(t, p.B.NS, args...)
	record := ownerRecordOf(t, a.cmd.Process.Pid)
	t.Cleanup(func() { os.Remove(record) })
	if out, code := a.stop(t, syscall.SIGKILL); code == 0 {
		t.Fatalf("kill -9: exit 0:\n%s", out)
	}
	foreign := t.TempDir()
	important := filepath.Join(foreign, "important.txt")
	if err := os.WriteFile(important, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	forged := fmt.Sprintf(`{"pid":999999,"iface":%q,"pin":%q}`+"\n", p.B.Name, foreign)
	if err := os.WriteFile(record, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startRun(t, p.B.NS, args...)
	out, code := b.stop(t, syscall.SIGINT)
	if code != 0 {
		t.Fatalf("run after the forged record: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(important); err != nil {
		t.Fatalf("a file the stale record named is gone: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(pinDir); len(ents) != 0 {
		t.Errorf("pins left after a clean stop: %v", ents)
	}
	noXDP(t, &p.B)
}

// TestRunOverPinnedProgramSaysHow: a run on an interface a pinned steering
// program (rules attach) holds is refused in one line that names its pins
// and the command that removes them; that command does.
func TestRunOverPinnedProgramSaysHow(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	pinDir := bpffsDir(t)
	pin := pinOf(t, &p.B, pinDir)
	t.Cleanup(func() { xdpipeIn(t, nil, "rules", "detach", "--pin", pin) })
	if out, code := xdpipeIn(t, p.B.NS, "rules", "attach", "--iface", p.B.Name, "--pin-dir", pinDir); code != 0 {
		t.Fatalf("rules attach: exit %d:\n%s", code, out)
	}
	out, code := xdpipeIn(t, p.B.NS, "run", "--iface", p.B.Name, "--stages", "count", "--metrics", "off")
	want := "a pinned steering program (pins under " + pin + ") is attached; remove it with `xdpipe rules detach --pin " + pin + "`"
	if code != 1 || !strings.Contains(out, want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("run over a pinned program: exit %d, want 1 and one line with %q:\n%s", code, want, out)
	}
	if out, code := xdpipeIn(t, nil, "rules", "detach", "--pin", pin); code != 0 {
		t.Fatalf("rules detach --pin: exit %d:\n%s", code, out)
	}
	noXDP(t, &p.B)
}

// manyRules is a steering rules file of n rules, one per UDP port: a file
// that takes the daemon a while to load and apply.
func manyRules(n int) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {priority: %d, name: r%d, proto: udp, dport: %d, action: redirect}\n", i+1, i, 1000+i)
	}
	return b.String()
}

// ownerRecordsOf lists the owner records that name process pid.
func ownerRecordsOf(t *testing.T, pid int) []string {
	t.Helper()
	var out []string
	files, _ := filepath.Glob(filepath.Join(bpf.DefaultOwnerDir, "*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), fmt.Sprintf(`"pid":%d,`, pid)) {
			out = append(out, f)
		}
	}
	return out
}

// TestSIGHUPDuringStartupIsQueued: a SIGHUP that arrives while run is still
// starting (a reload racing a start; here 100 to 200 ms after the process
// became xdpipe, with 10,000 rules to load) neither kills it nor is lost:
// run starts, reloads once ready, and on SIGTERM stops cleanly, leaving no
// pins and no owner record. Earlier than that the Go runtime may not have
// started yet (package hangup): on a loaded machine it takes up to some
// tens of milliseconds from the exec.
func TestSIGHUPDuringStartupIsQueued(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	pinDir := bpffsDir(t)
	rulesFile := writeFile(t, "rules.yaml", manyRules(10000))
	for _, delay := range []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			r := launchProc(t, exec.Command("ip", "netns", "exec", p.B.NS.Name, xdpipeBin, "run", "--iface", p.B.Name, "--stages", "count",
				"--metrics", "off", "--interval", "0s", "--rules", rulesFile, "--pin-dir", pinDir), "run: reloaded")
			pid := r.cmd.Process.Pid
			// The delay counts from the exec of xdpipe (ip netns exec
			// execs it in the same process): a SIGHUP to ip itself is
			// not the daemon's to catch.
			testutil.Eventually(t, 10*time.Second, func() bool {
				exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
				return exe == xdpipeBin
			}, "xdpipe not started")
			time.Sleep(delay) // the scenario's delay, not a wait for a condition
			if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(r.output(), "run: ready") {
				t.Fatalf("ready within %v: the SIGHUP came after the start, and the test tests nothing", delay)
			}
			select {
			case <-r.ready:
			case code := <-r.exited:
				<-r.done
				t.Fatalf("SIGHUP %v after start: exit %d (%v), want it queued until the daemon can reload:\n%s", delay, code, r.cmd.ProcessState, r.output())
			case <-time.After(readyWithin):
				t.Fatalf("no reload %v after a SIGHUP %v after start:\n%s", readyWithin, delay, r.output())
			}
			out, code := r.stop(t, syscall.SIGTERM)
			if ready := strings.Index(out, "run: ready"); code != 0 || ready < 0 || ready > strings.Index(out, "run: reloaded") {
				t.Fatalf("exit %d, want 0 with a reload after the ready line:\n%s", code, out)
			}
			if n := strings.Count(out, "run: reloaded"); n != 1 {
				t.Errorf("%d reloads for one SIGHUP:\n%s", n, out)
			}
			if ents, _ := os.ReadDir(pinDir); len(ents) > 0 {
				t.Errorf("pins left after a clean stop: %v", ents)
			}
			if recs := ownerRecordsOf(t, pid); len(recs) > 0 {
				t.Errorf("owner records of pid %d left after a clean stop: %v", pid, recs)
			}
			noXDP(t, &p.B)
		})
	}
}

// captureSizes maps each capture file in dir to its size.
func captureSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "cap*.pcap"))
	out := map[string]int64{}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			out[filepath.Base(f)] = st.Size()
		}
	}
	return out
}

// TestReloadAfterRotationKeepsTheCapture: SIGHUP after the capture rotated
// past its first file (no longer locked) truncates no capture file and
// adds none beyond max_files; the frames after it go on in the same
// rotation.
func TestReloadAfterRotationKeepsTheCapture(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	cfg, capFile := l2fwdConfig(t, p, "", ", max_bytes: 100000, max_files: 5")
	dir := filepath.Dir(capFile)
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	proc := startRun(t, p.B.NS, "--config", cfg, "--metrics", "off", "--interval", "0s")
	sendFrames(t, back, p, 2500, 128, back.Received) // 80 bytes a record: a file every 1,250
	waitBack(t, back, 2500)
	before := captureSizes(t, dir)
	if before["cap.pcap"] < 100000 || len(before) < 3 {
		t.Fatalf("capture files %v: want cap.pcap full and rotated past, or the test tests nothing", before)
	}
	proc.cmd.Process.Signal(syscall.SIGHUP)
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(proc.output(), "run: reloaded") }, "no reload")
	check := func(when string) {
		t.Helper()
		after := captureSizes(t, dir)
		for name, size := range before {
			if got, ok := after[name]; ok && got < size {
				t.Errorf("%s: %s shrank from %d to %d bytes", when, name, size, got)
			}
		}
		if len(after) > 5 {
			t.Errorf("%s: capture files %v, more than max_files 5", when, after)
		}
	}
	check("after SIGHUP")
	sendFlows(t, back, p, 2500, 4000, 128, 1, back.Received)
	waitBack(t, back, 6500)
	if out, code := proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	check("after the frames that followed")
	after := captureSizes(t, dir)
	if _, ok := after["cap.5.pcap"]; !ok || len(after) != 5 || after["cap.1.pcap"] != before["cap.1.pcap"] {
		t.Errorf("capture files %v: want the rotation continued to cap.5.pcap, keeping 5 files", after)
	}
}

// TestCheckRefusesWhatRunRefuses: everything run refuses before it
// attaches, run --check refuses too, with the same one line, and run
// refuses it before anything is mapped or attached (no XDP program, no
// pins): both go through one validation.
func TestCheckRefusesWhatRunRefuses(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{Queues: 2})
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.pcap")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	steer := writeFile(t, "steer.yaml", gateRules)
	pinDir := bpffsDir(t)
	base := "interfaces: [" + p.B.Name + "]\nqueues: 0\nmetrics: \"off\"\n"
	cases := []struct{ name, body, want string }{
		{"pin_dir not on a bpffs", base + "rules: " + steer + "\npin_dir: " + dir + "/pins\nstages: [count]\n", "is not on a bpffs"},
		{"ipfix collector without a route", base + "stages: [{ipfix: {collector: \"198.19.0.1:4739\", max_flows: 100}}]\n", "network is unreachable"},
		{"ipfix link-local collector without a zone", base + "stages: [{ipfix: {collector: \"[fe80::1]:4739\", max_flows: 100}}]\n", "collector [fe80::1]:4739"},
		{"zerocopy on veth", base + "bind: zerocopy\nstages: [count]\n", "zero-copy: driver veth has no xsk-zerocopy"},
		{"burst beyond the largest", base + "ring: 8192\nburst: 5000\nstages: [count]\n", "burst size 5000: want 1..4096"},
		{"negative burst", base + "burst: -5\nstages: [count]\n", "burst size -5"},
		{"tx_batch beyond the largest", base + "tx_batch: 5000\nstages: [count]\n", "tx batch 5000: want 1..4096"},
		{"negative tx_batch", base + "tx_batch: -1\nstages: [count]\n", "tx batch -1"},
		{"frame_size 3000", base + "frame_size: 3000\nstages: [count]\n", "frame size 3000: must be 2048 or 4096"},
		{"rdma without verbs", base + "stages: [{rdma: {connect: \"198.18.0.2:7471\"}}]\n", "build with -tags rdma"},
		{"pcap under /proc", base + "stages: [{pcap: {path: /proc/cap.pcap}}]\n", "is on procfs"},
		{"pcap on a FIFO", base + "stages: [{pcap: {path: " + fifo + "}}]\n", "is not a regular file (a FIFO)"},
		{"interval 1ns", base + "interval: 1ns\nstages: [count]\n", "interval 1ns: want 0 (no rate lines) or at least 10ms"},
		{"an interface another instance holds", base + "stages: [count]\n", "held by another xdpipe instance"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "zerocopy on veth" {
				testutil.RequireVeth(t, "zero-copy is refused")
			}
			if c.name == "an interface another instance holds" {
				a := startRun(t, p.B.NS, "--iface", p.B.Name, "--queues", "1", "--stages", "count", "--metrics", "off",
					"--rules", steer, "--pin-dir", pinDir)
				defer func() {
					if out, code := a.stop(t, syscall.SIGTERM); code != 0 {
						t.Errorf("the instance holding the interface: exit %d:\n%s", code, out)
					}
				}()
			}
			cfg := writeFile(t, fmt.Sprintf("c%d.yaml", i), c.body)
			check, ccode := xdpipeIn(t, p.B.NS, "run", "--check", "--config", cfg)
			run, rcode := xdpipeIn(t, p.B.NS, "run", "--config", cfg, "--duration", "1s")
			line := strings.TrimSpace(check)
			if ccode != 1 || rcode != 1 || check != run || strings.Contains(line, "\n") || !strings.Contains(line, c.want) {
				t.Fatalf("--check: exit %d:\n%s\nrun: exit %d:\n%s\nwant both 1 with the same line naming %q", ccode, check, rcode, run, c.want)
			}
			if c.name != "an interface another instance holds" {
				noXDP(t, &p.B)
			}
			t.Log(line)
		})
	}
}

// TestRunTellsSystemdItIsReady: the unit is Type=notify, and run sends
// READY=1 to $NOTIFY_SOCKET once it runs, not before: systemd holds a
// reload's SIGHUP back until then.
func TestRunTellsSystemdItIsReady(t *testing.T) {
	if got := unitSettings(t)["Type"]; len(got) != 1 || got[0] != "notify" {
		t.Errorf("the unit's Type %q, want notify", got)
	}
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd := exec.Command("ip", "netns", "exec", p.B.NS.Name, xdpipeBin, "run", "--iface", p.B.Name, "--stages", "count", "--metrics", "off")
	cmd.Env = shellEnv("NOTIFY_SOCKET=" + sock)
	r := startProc(t, cmd, "run: ready", "run")
	c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hung test's bound, not a timing gate
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Errorf("from run: %q, %v; want READY=1", buf[:n], err)
	}
	if out, code := r.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// TestReloadDoesWhatItSays: SIGHUP with a file that changes a setting only
// a restart applies, names an interface that does not exist, or that
// --check refuses, is refused in one line naming the cause, and the
// running configuration stays; a file that changes the stages and the
// rate-line interval is applied.
func TestReloadDoesWhatItSays(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	base := "interfaces: [" + p.B.Name + "]\nmetrics: \"off\"\n"
	cfg := writeFile(t, "run.yaml", base+"interval: 0s\nstages: [count]\n")
	proc := startRun(t, p.B.NS, "--config", cfg)
	for _, c := range []struct{ body, want string }{
		{base + "ring: 4096\ndefault: transmit\nstages: [count]\n", "err=\"ring, default changed: a restart applies them, a reload does not; nothing was reloaded\""},
		{"interfaces: [nosuch0]\nmetrics: \"off\"\nstages: [count]\n", `interface \"nosuch0\" not found`},
		{base + "frame_size: 3000\nstages: [count]\n", "frame size 3000: must be 2048 or 4096"},
	} {
		if err := os.WriteFile(cfg, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		n := strings.Count(proc.output(), "reload failed")
		proc.cmd.Process.Signal(syscall.SIGHUP)
		testutil.Eventually(t, 20*time.Second, func() bool {
			return strings.Count(proc.output(), "reload failed") > n || strings.Contains(proc.output(), "run: reloaded")
		}, "no answer to SIGHUP")
		out := proc.output()
		if strings.Contains(out, "run: reloaded") || !strings.Contains(out, c.want) {
			t.Fatalf("reload of\n%s: want it refused with %s:\n%s", c.body, c.want, out)
		}
	}
	if err := os.WriteFile(cfg, []byte(base+"interval: 200ms\nstages: [count, macswap]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	proc.cmd.Process.Signal(syscall.SIGHUP)
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(proc.output(), "queue 0: rx") },
		"no rate line after a reload set interval: 200ms")
	out, code := proc.stop(t, syscall.SIGTERM)
	if code != 0 || !strings.Contains(out, "stages=count,macswap") {
		t.Fatalf("exit %d, want the stages reloaded:\n%s", code, out)
	}
}
