package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// startRxdrop starts `xdpipe rxdrop` on the B end with a rate line every
// 20 ms (for waitGenerated) and waits for its start-up line, so traffic
// sent afterwards is received.
func startRxdrop(t *testing.T, p *testutil.LinkPair, args ...string) *runProc {
	t.Helper()
	return startXdpipe(t, p.B.NS, "rxdrop: ", append([]string{"rxdrop", "--iface", p.B.Name, "--interval", "20ms"}, args...)...)
}

// rateRE matches what rxdrop's rate line counts: the generated frames
// received so far, and the frames the kernel dropped in front of the
// socket.
var rateRE = regexp.MustCompile(`\(generated (\d+)\)  \| rx_dropped=(\d+) rx_ring_full=(\d+)`)

// waitGenerated waits until rxdrop's rate lines account for want
// generated frames: received, dropped by the kernel in front of its
// socket (for all it knows, generated ones), or counted by elsewhere
// (nil: nowhere else).
func waitGenerated(t *testing.T, proc *runProc, want uint64, elsewhere func() uint64) {
	t.Helper()
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		var got, other uint64
		if m := rateRE.FindAllStringSubmatch(proc.output(), -1); m != nil {
			for _, n := range m[len(m)-1][1:] {
				v, _ := strconv.ParseUint(n, 10, 64)
				got += v
			}
		}
		if elsewhere != nil {
			other = elsewhere()
		}
		if got+other < want {
			return fmt.Errorf("rxdrop accounts for %d generated frames, %d more elsewhere, of %d sent:\n%s", got, other, want, proc.output())
		}
		return nil
	})
}

// trackedRE matches the tracker's line in rxdrop's summary.
var trackedRE = regexp.MustCompile(`generated: received (\d+) \(unique (\d+)\) of (\d+): lost (\d+), duplicates (\d+)`)

// tracked returns the received, unique and lost counts of generated frames
// from rxdrop's output.
func tracked(t *testing.T, out string) (received, unique, lost uint64) {
	t.Helper()
	m := trackedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no tracker line in rxdrop output:\n%s", out)
	}
	num := func(s string) uint64 { n, _ := strconv.ParseUint(s, 10, 64); return n }
	return num(m[1]), num(m[2]), num(m[4])
}

// genSentRE matches gen's summary: frames the driver took, and those it
// refused (live engine only).
var genSentRE = regexp.MustCompile(`sent (\d+) frames in [^\n(]*(?:\((\d+) more made but refused by the driver[^\n]*)?\n`)

// genSent returns what gen's summary says the driver took and refused.
func genSent(t *testing.T, out string) (sent, refused uint64) {
	t.Helper()
	m := genSentRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in gen's output:\n%s", out)
	}
	sent, _ = strconv.ParseUint(m[1], 10, 64)
	refused, _ = strconv.ParseUint(m[2], 10, 64) // empty: none
	return sent, refused
}

// kernelRE matches the socket's kernel drop counters in rxdrop's summary.
var kernelRE = regexp.MustCompile(`xdp: rx_dropped=(\d+) rx_ring_full=(\d+)`)

// kernelDrops returns the frames the kernel dropped in front of rxdrop's
// socket: rx_dropped (no fill ring entry, too large) plus rx_ring_full.
func kernelDrops(t *testing.T, out string) uint64 {
	t.Helper()
	m := kernelRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no xdp statistics in rxdrop's summary:\n%s", out)
	}
	dropped, _ := strconv.ParseUint(m[1], 10, 64)
	full, _ := strconv.ParseUint(m[2], 10, 64)
	return dropped + full
}

// TestRxdropCountsExactly sends a known number of frames at a moderate
// rate and requires rxdrop to count exactly those no counter reports
// dropped, spinning, in wakeup mode (naps and poll(2)) and in wakeup mode
// with poll(2) only, then stops it with SIGINT and checks nothing stays
// attached.
func TestRxdropCountsExactly(t *testing.T) {
	for name, poll := range map[string][]string{
		"spin":        {"--poll", "spin"},
		"wakeup":      {"--poll", "wakeup"},
		"wakeup-poll": {"--poll", "wakeup", "--coalesce", "0"},
	} {
		t.Run(name, func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			// Deep rings (160 ms of traffic at this rate) so a receiver
			// descheduled on a busy machine still loses nothing.
			proc := startRxdrop(t, p, append(poll, "--bind", testutil.Bind(), "--ring", "8192", "--frames", "32768")...)
			count := uint64(testutil.Frames(50000))
			genOut, code := xdpipeIn(t, p.A.NS, genFrom(p, int(count), "50k")...)
			if code != 0 {
				t.Fatalf("gen exited %d:\n%s", code, genOut)
			}
			// Every frame arrives or is counted where it was dropped: by
			// gen's driver (a veth refuses frames while its peer's ring is
			// full) or by the kernel in front of the socket (rx ring full).
			// On a busy machine either can happen; nothing may vanish.
			sent, refused := genSent(t, genOut)
			waitGenerated(t, proc, sent, nil)
			out, code := proc.stop(t, syscall.SIGINT)
			if code != 0 {
				t.Fatalf("rxdrop exited %d after SIGINT:\n%s", code, out)
			}
			kernel := kernelDrops(t, out)
			if rx, uniq, lost := tracked(t, out); sent+refused != count || rx != uniq || uniq+kernel != sent || lost > refused+kernel {
				t.Errorf("gen made %d (sent %d, refused %d); rxdrop saw %d generated frames (%d unique, %d lost), the kernel dropped %d\n%s\n%s",
					count, sent, refused, rx, uniq, lost, kernel, genOut, out)
			} else if refused+kernel > 0 {
				t.Logf("counted drops on a busy machine: %d refused by gen's driver, %d by the kernel", refused, kernel)
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "generated: received") {
					t.Log(strings.TrimSpace(line)) // reordering and latency, for the record
				}
			}
			if !strings.Contains(out, "AF_XDP "+testutil.Bind()+" mode") {
				t.Errorf("rxdrop not bound in %s mode:\n%s", testutil.Bind(), out)
			}
			noXDP(t, &p.B)
		})
	}
}

// TestRxdropBadInput checks each misuse gives a one-line error naming the
// cause, a non-zero exit, and leaves nothing attached.
func TestRxdropBadInput(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	down := p.B.NS
	down.MustRun(t, "ip", "link", "add", "xdpdown", "type", "veth", "peer", "name", "xdpdown1")

	cases := []struct {
		name string
		wrap []string // command prefix, e.g. privileges dropped
		args []string
		want string
	}{
		{"no iface flag", nil, []string{}, "--iface is required"},
		{"missing interface", nil, []string{"--iface", "nosuch0"}, `interface "nosuch0" not found`},
		{"queue out of range", nil, []string{"--iface", p.B.Name, "--queue", "99"},
			"queue 99: " + p.B.Name + " has 1 active RX queues (0 to 0); pick one of them or raise the count with ethtool -L " + p.B.Name},
		{"interface down", nil, []string{"--iface", "xdpdown"}, "is down"},
		{"zero-copy on veth", nil, []string{"--iface", p.B.Name, "--bind", "zerocopy"},
			"bind " + p.B.Name + " queue 0: zero-copy: driver veth has no xsk-zerocopy in its xdp-features; use copy or auto mode"},
		{"bad bind mode", nil, []string{"--iface", p.B.Name, "--bind", "fast"}, "unknown bind mode"},
		{"bad poll mode", nil, []string{"--iface", p.B.Name, "--poll", "sometimes"}, `--poll: poll mode "sometimes": want spin or wakeup`},
		{"bad coalesce", nil, []string{"--iface", p.B.Name, "--poll", "wakeup", "--coalesce", "-1ms"}, "--coalesce: coalesce -1ms: want 0 to 1s"},
		{"bad frame size", nil, []string{"--iface", p.B.Name, "--frame-size", "1000"}, "--frame-size: frame size 1000: must be 2048 or 4096"},
		{"bad ring size", nil, []string{"--iface", p.B.Name, "--ring", "1000"}, "power of two"},
		{"ring size a uint32 would cut to 64", nil, []string{"--iface", p.B.Name, "--ring", "4294967360"}, "--ring 4294967360: want a power of two"},
		{"more frames than a UMEM counts", nil, []string{"--iface", p.B.Name, "--frames", "8589934592"}, "--frames 8589934592: more frames than a UMEM can count"},
		{"not root", []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"},
			[]string{"--iface", p.B.Name}, "missing capability CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW"},
		{"memlock too low", []string{"prlimit", "--memlock=65536:65536", "setpriv",
			"--bounding-set=-ipc_lock,-sys_resource", "--inh-caps=-ipc_lock,-sys_resource", "--"},
			[]string{"--iface", p.B.Name, "--frames", "16384"}, "RLIMIT_MEMLOCK"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "zero-copy on veth" {
				testutil.RequireVeth(t, "zero-copy is refused")
			}
			for _, w := range c.wrap {
				if !strings.HasPrefix(w, "-") { // a program, not one of its flags
					testutil.RequireTool(t, w)
				}
			}
			args := append([]string{"netns", "exec", down.Name}, c.wrap...)
			args = append(append(args, xdpipeBin, "rxdrop", "--duration", "1s"), c.args...)
			out, err := exec.Command("ip", args...).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() == 0 {
				t.Fatalf("want a non-zero exit, got %v:\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, c.want) {
				t.Errorf("want an error containing %q, got:\n%s", c.want, out)
			}
			noXDP(t, &p.B)
		})
	}
}

// TestRxdropStartLine: the start line shows the driver's XDP features and,
// with --bind auto, why the socket is in copy mode.
func TestRxdropStartLine(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	out, code := startRxdrop(t, p, "--duration", "1s").wait(t)
	if code != 0 {
		t.Fatalf("rxdrop exited %d:\n%s", code, out)
	}
	start := strings.SplitN(out, "\n", 2)[0]
	for _, want := range []string{"xdp-features basic,redirect,", "zc-max-segs 0",
		"AF_XDP copy mode (auto: driver veth has no xsk-zerocopy in its xdp-features)"} {
		if !strings.Contains(start, want) {
			t.Errorf("start line lacks %q:\n%s", want, start)
		}
	}
}

// TestRxdropQueueTaken checks that a second receiver on a busy queue gets a
// clear error and does not disturb the first.
func TestRxdropQueueTaken(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	first := startRxdrop(t, p, "--poll", "wakeup", "--bind", testutil.Bind())
	out, code := xdpipeIn(t, p.B.NS, "rxdrop", "--iface", p.B.Name, "--duration", "1s", "--bind", testutil.Bind())
	// The interface's owner refuses it before a socket is tried.
	if code == 0 || !strings.Contains(out, "held by another xdpipe instance: xdpipe pid") {
		t.Errorf("second rxdrop on the same queue: exit %d, want a clear 'held by another xdpipe instance' error:\n%s", code, out)
	}
	if out, code := first.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("first rxdrop exited %d after SIGTERM:\n%s", code, out)
	}
	noXDP(t, &p.B)
}

// TestRxdropRules runs rxdrop behind the steering program: a rule file
// that redirects the generated flow delivers all of it; one that redirects
// another port delivers none of it (the default passes it to the kernel);
// a broken file is refused with its file and line before anything is
// attached.
func TestRxdropRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, c := range []struct {
		name  string
		dport int
		want  uint64
	}{{"matching", 9, 2000}, {"other port", 10, 0}} {
		t.Run(c.name, func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			file := write(c.name+".yaml", fmt.Sprintf("default: pass\nrules:\n  - priority: 1\n    proto: udp\n    dst: %s\n    dport: %d\n    action: redirect\n", p.B.IP, c.dport))
			proc := startRxdrop(t, p, "--rules", file, "--ring", "4096", "--frames", "16384", "--bind", testutil.Bind())
			// The frames the rules do not redirect reach B's IPv4 stack.
			stack := ipReceived(t, p.B.NS)
			out, code := xdpipeIn(t, p.A.NS, genFrom(p, 2000, "20k")...)
			if code != 0 {
				t.Fatalf("gen exited %d:\n%s", code, out)
			}
			sent, _ := genSent(t, out)
			waitGenerated(t, proc, sent, stack)
			out, code = proc.stop(t, syscall.SIGINT)
			if code != 0 || !strings.Contains(out, "steer with 1 rules") {
				t.Fatalf("rxdrop exited %d, or not behind the steering program:\n%s", code, out)
			}
			if rx, _, _ := tracked(t, out); rx != c.want {
				t.Errorf("received %d generated frames, want %d:\n%s", rx, c.want, out)
			}
			noXDP(t, &p.B)
		})
	}
	t.Run("broken file", func(t *testing.T) {
		p := testutil.NewLinkPair(t, testutil.LinkOptions{})
		file := write("broken.yaml", "rules:\n  - priority: 1\n    dport: 20-10\n    action: redirect\n")
		out, code := xdpipeIn(t, p.B.NS, "rxdrop", "--iface", p.B.Name, "--rules", file)
		if code == 0 || !strings.Contains(out, "broken.yaml:3") {
			t.Errorf("want a non-zero exit naming broken.yaml:3, got %d:\n%s", code, out)
		}
		noXDP(t, &p.B)
	})
}

// TestRxdropJumbo: on an MTU 9000 veth rxdrop turns multi-buffer on by
// itself and counts each 9000-byte frame once, though it spans three UMEM
// frames.
func TestRxdropJumbo(t *testing.T) {
	if testutil.Bind() == "zerocopy" {
		t.Skip("multi-buffer: copy mode only on virtio-net (xdp-zc-max-segs 1); TestZeroCopyJumbo has the zero-copy outcome")
	}
	p := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: 9000})
	proc := startRxdrop(t, p)
	const count = 500
	sendJumbo(t, p, proc, count)
	out, code := proc.stop(t, syscall.SIGINT)
	if code != 0 {
		t.Fatalf("rxdrop exited %d:\n%s", code, out)
	}
	// Every frame arrives, or the kernel counts it dropped in front of
	// the socket (rx ring full on a busy machine).
	kernel := kernelDrops(t, out)
	if rx, uniq, lost := tracked(t, out); rx != uniq || rx+kernel != count || lost > kernel {
		t.Errorf("received %d 9000-byte frames (%d unique, %d lost), the kernel dropped %d, want %d in all:\n%s", rx, uniq, lost, kernel, count, out)
	}
	if kernel == 0 && !regexp.MustCompile(`summary: 50\d packets, 45\d{5} bytes`).MatchString(out) {
		t.Errorf("want about %d packets of 9000 bytes counted once each (a few foreign ones allowed):\n%s", count, out)
	}
}

// sendJumbo sends count generated 9000-byte frames from p.A to p.B (gen's
// xsk engine, multi-buffer) and waits until rxdrop (proc) accounts for
// them.
func sendJumbo(t *testing.T, p *testutil.LinkPair, proc *runProc, count int) {
	t.Helper()
	out, code := xdpipeIn(t, p.A.NS, "gen", "--engine", "xsk", "--size", "9000", "--iface", p.A.Name,
		"--dst-mac", p.B.MAC.String(), "--dst-ip", p.B.IP.String(), "--count", strconv.Itoa(count), "--rate", "5k", "--quiet")
	if code != 0 {
		t.Fatalf("gen exited %d:\n%s", code, out)
	}
	waitGenerated(t, proc, uint64(count), nil)
}

// ipReceived returns a function that reads how many IPv4 datagrams the
// stack of ns has received (/proc/net/snmp's Ip InReceives) since this
// call.
func ipReceived(t *testing.T, ns *testutil.NetNS) func() uint64 {
	t.Helper()
	read := func() uint64 {
		var head []string
		for _, line := range strings.Split(ns.MustRun(t, "cat", "/proc/net/snmp"), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Ip:" {
				continue
			}
			if head == nil {
				head = f
				continue
			}
			if i := slices.Index(head, "InReceives"); i > 0 && i < len(f) {
				n, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatalf("/proc/net/snmp in %s: %v", ns.Name, err)
				}
				return n
			}
		}
		t.Fatalf("no Ip InReceives in /proc/net/snmp of %s", ns.Name)
		return 0
	}
	base := read()
	return func() uint64 { return read() - base }
}

// TestRxdropCountsUnboundQueues: frames arriving on an RX queue where
// rxdrop has no socket go to the kernel stack; rxdrop counts them per queue
// in its rate lines and summary and says once which queues and what to do.
// Frames on its own queue are received as before.
func TestRxdropCountsUnboundQueues(t *testing.T) {
	testutil.RequireVeth(t, "a veth hands a frame sent on A's queue q to B's queue q")
	p := testutil.NewLinkPair(t, testutil.LinkOptions{Queues: 2})
	// Exact counts: no IPv6 chatter (MLD, router solicitations) from A.
	p.A.NS.MustRun(t, "sysctl", "-qw", "net.ipv6.conf."+p.A.Name+".disable_ipv6=1")
	proc := startXdpipe(t, p.B.NS, "rxdrop: ", "rxdrop", "--iface", p.B.Name, "--queue", "0", "--interval", "50ms")
	for q, n := range []int{100, 300} {
		if out, code := xdpipeIn(t, p.A.NS, genFrom(p, n, "20k", "--engine", "xsk", "--queue", strconv.Itoa(q))...); code != 0 {
			t.Fatalf("gen on queue %d exited %d:\n%s", q, code, out)
		}
	}
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if out := proc.output(); !strings.Contains(out, "unbound: q1=300\n") {
			return fmt.Errorf("no rate line counts the 300 frames on queue 1:\n%s", out)
		}
		return nil
	})
	warn := "rxdrop: warning: frames on " + p.B.Name + " RX queues [1] reach no AF_XDP socket and go to the kernel stack"
	testutil.EventuallyErr(t, 10*time.Second, func() error { // rxdrop looks once a second
		if out := proc.output(); !strings.Contains(out, warn) {
			return fmt.Errorf("no warning about queue 1:\n%s", out)
		}
		return nil
	})
	out, code := proc.stop(t, syscall.SIGINT)
	if code != 0 {
		t.Fatalf("rxdrop exited %d:\n%s", code, out)
	}
	if n := strings.Count(out, warn); n != 1 || !strings.Contains(out, "ethtool -L "+p.B.Name) {
		t.Errorf("want one warning naming queue 1 and ethtool, got %d:\n%s", n, out)
	}
	if !regexp.MustCompile(`(?m)^xdp: .* \| unbound: q1=300$`).MatchString(out) {
		t.Errorf("the summary does not count the frames on queue 1:\n%s", out)
	}
	if rx, uniq, _ := tracked(t, out); rx != 100 || uniq != 100 {
		t.Errorf("received %d generated frames (%d unique) on queue 0, want 100:\n%s", rx, uniq, out)
	}
}

// receivers are rxdrop's and run's command lines on B, with more flags.
var receivers = []struct {
	name, ready string
	args        func(p *testutil.LinkPair, more ...string) []string
}{
	{"rxdrop", "rxdrop: ", func(p *testutil.LinkPair, more ...string) []string {
		return append([]string{"rxdrop", "--iface", p.B.Name, "--interval", "1h"}, more...)
	}},
	{"run", "run: ready", func(p *testutil.LinkPair, more ...string) []string {
		return append([]string{"run", "--iface", p.B.Name, "--queues", "0", "--stages", "count", "--metrics", "off", "--interval", "1h"}, more...)
	}},
}

// saysOnce waits for warn in proc's output (the receivers look once a
// second), stops proc and requires warn exactly once.
func saysOnce(t *testing.T, proc *runProc, warn string) {
	t.Helper()
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if out := proc.output(); !strings.Contains(out, warn) {
			return fmt.Errorf("no warning %q:\n%s", warn, out)
		}
		return nil
	})
	out, code := proc.stop(t, syscall.SIGINT)
	if code != 0 || strings.Count(out, warn) != 1 {
		t.Fatalf("exit %d, want one warning %q:\n%s", code, warn, out)
	}
}

// TestBusyPollWithoutNAPI: on a veth, whose XDP path has no NAPI id, a
// busy-polling socket polls nothing, and rxdrop and run say so once the
// first frames have come, once; the frames still arrive.
func TestBusyPollWithoutNAPI(t *testing.T) {
	testutil.RequireVeth(t, "a veth's XDP path has no NAPI id")
	for _, c := range receivers {
		t.Run(c.name, func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			proc := startXdpipe(t, p.B.NS, c.ready, c.args(p, "--busy-poll")...)
			if out, code := xdpipeIn(t, p.A.NS, genFrom(p, 200, "10k")...); code != 0 {
				t.Fatalf("gen exited %d:\n%s", code, out)
			}
			saysOnce(t, proc, "busy polling on "+p.B.Name+" queue 0 polls nothing")
		})
	}
}

// TestMTURaisedUnderReceiver: an MTU raised past what the sockets' UMEM
// frames hold (they were set up without multi-buffer) makes the kernel
// drop the larger frames; rxdrop and run say so once, with what to do.
func TestMTURaisedUnderReceiver(t *testing.T) {
	for _, c := range receivers {
		t.Run(c.name, func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			proc := startXdpipe(t, p.B.NS, c.ready, c.args(p)...)
			p.B.NS.MustRun(t, "ip", "link", "set", p.B.Name, "mtu", "9000")
			saysOnce(t, proc, p.B.Name+" has an MTU of 9000 now: its frames above ")
		})
	}
}
