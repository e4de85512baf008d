package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// runIn starts `xdpipe run` in namespace ns and waits for its ready line.
// Output is collected; stop sends sig and returns output and exit code.
type runProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	lines  chan string
	exited chan int
	done   chan struct{}
	ready  chan struct{}
}

func (p *runProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func startRun(t *testing.T, ns *testutil.NetNS, args ...string) *runProc {
	t.Helper()
	return startXdpipe(t, ns, "run: ready", append([]string{"run"}, args...)...)
}

// startXdpipe starts an xdpipe command in namespace ns and waits for the
// line starting with ready.
func startXdpipe(t *testing.T, ns *testutil.NetNS, ready string, args ...string) *runProc {
	t.Helper()
	return startProc(t, exec.Command("ip", append([]string{"netns", "exec", ns.Name, xdpipeBin}, args...)...), ready, args[0])
}

// startProc starts cmd, an xdpipe command (name) however wrapped, and
// waits for the line starting with ready.
func startProc(t *testing.T, cmd *exec.Cmd, ready, name string) *runProc {
	t.Helper()
	p := launchProc(t, cmd, ready)
	select {
	case <-p.ready:
	case code := <-p.exited:
		<-p.done
		t.Fatalf("xdpipe %s exited with %d before it was ready:\n%s", name, code, p.output())
	case <-time.After(readyWithin):
		t.Fatalf("xdpipe %s not ready after %v:\n%s", name, readyWithin, p.output())
	}
	return p
}

// launchProc starts cmd and collects its output; p.ready is closed at the
// first line starting with ready.
func launchProc(t *testing.T, cmd *exec.Cmd, ready string) *runProc {
	t.Helper()
	p := &runProc{cmd: cmd, lines: make(chan string, 1000), exited: make(chan int, 1), done: make(chan struct{}), ready: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill() })
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if strings.HasPrefix(sc.Text(), ready) {
				once.Do(func() { close(p.ready) })
			}
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		p.exited <- code
	}()
	return p
}

// stop sends sig and returns the output and exit code once the process
// has exited.
func (p *runProc) stop(t *testing.T, sig syscall.Signal) (string, int) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	return p.wait(t)
}

// wait returns the output and exit code once the process exits.
func (p *runProc) wait(t *testing.T) (string, int) {
	t.Helper()
	select {
	case code := <-p.exited:
		<-p.done
		return p.output(), code
	case <-time.After(20 * time.Second): // a hung test's bound, not a timing gate
		t.Fatalf("xdpipe went on running:\n%s", p.output())
	}
	return "", 0
}

// TestRunBadInput: each bad config fails with a clear error before
// anything is attached.
func TestRunBadInput(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	dir := t.TempDir()
	// A port in use in B's namespace.
	var busy net.Listener
	p.B.NS.MustDo(t, func() error {
		var err error
		busy, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	t.Cleanup(func() { busy.Close() })
	cases := []struct {
		name, config, want string
		args               []string
	}{
		{"unknown stage", "interfaces: [xdpb]\nstages: [count, teleport]\n", `unknown stage "teleport"`, nil},
		{"missing interface", "interfaces: [nosuch0]\nstages: [count]\n", `interface "nosuch0" not found`, nil},
		{"overlapping cpus", "interfaces: [xdpb]\ncpus: 0-1,1\nstages: [count]\n", "cpu 1 listed twice", nil},
		{"unwritable pcap", "interfaces: [xdpb]\nstages: [{pcap: {path: /nonexistent/dir/x.pcap}}]\n", "no such file or directory", nil},
		{"metrics port in use", "interfaces: [xdpb]\nstages: [count]\n", "address already in use", []string{"--metrics", busy.Addr().String()}},
		{"forward to unknown", "interfaces: [xdpb]\nstages: [{forward: {to: eth9}}]\n", `output "eth9" is not one of the interfaces`, nil},
		{"zero-copy on veth", "interfaces: [xdpb]\nbind: zerocopy\nstages: [count]\n", "zero-copy: driver veth has no xsk-zerocopy in its xdp-features; use copy or auto mode", nil},
		{"bad steering rules", "interfaces: [xdpb]\nrules: " + filepath.Join(dir, "none.yaml") + "\nstages: [count]\n", "steering rules", nil},
		{"rdma without sink", "interfaces: [xdpb]\nstages: [count, rdma]\n", "stage rdma (line 2): needs connect", nil},
		{"rdma bad address", "interfaces: [xdpb]\nstages: [{rdma: {connect: 198.18.0.2}}]\n", "missing port in address", nil},
		// The namespace has no route to a resolver: the name fails there.
		{"ipfix collector does not resolve", "interfaces: [xdpb]\nstages: [{ipfix: {collector: \"nosuch.invalid:4739\", max_flows: 100}}]\n",
			`stage ipfix (line 2): collector "nosuch.invalid:4739" does not resolve`, nil},
		{"ipfix max_flows 0", "interfaces: [xdpb]\nstages: [{ipfix: {collector: \"198.18.0.2:4739\", max_flows: 0}}]\n",
			"stage ipfix (line 2): max_flows 0: want 1..268435456", nil},
		{"ipfix max_flows beyond memory", "interfaces: [xdpb]\nstages: [{ipfix: {collector: \"198.18.0.2:4739\", max_flows: 1099511627776}}]\n",
			"stage ipfix (line 2) max_flows: the configuration needs", nil},
		{"ipfix timeout out of range", "interfaces: [xdpb]\nstages: [{ipfix: {collector: \"198.18.0.2:4739\", max_flows: 10, idle_timeout: 2h}}]\n",
			"stage ipfix (line 2): idle_timeout 2h0m0s out of range: want 1s..1h0m0s", nil},
		// The default build has no verbs: the stage says how to get them.
		{"rdma not built in", "interfaces: [xdpb]\nstages: [{rdma: {connect: \"198.18.0.2:7471\"}}]\n", "build with -tags rdma", nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "zero-copy on veth" {
				testutil.RequireVeth(t, "zero-copy is refused")
			}
			cfg := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
			os.WriteFile(cfg, []byte(c.config), 0o644)
			out, code := xdpipeIn(t, p.B.NS, append([]string{"run", "--config", cfg}, c.args...)...)
			if code != 1 || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d, want 1 with %q:\n%s", code, c.want, out)
			}
			if strings.Contains(out, "attached") {
				t.Fatalf("something was attached before the error:\n%s", out)
			}
			noXDP(t, &p.B)
			t.Logf("%s", strings.TrimSpace(out))
		})
	}
}

// udpFlow is a UDP/IPv4 frame from A to B, destination port 9, with a
// sequence number in the payload; checksums are not needed by anyone here.
// (source port 40000+flow).
func udpFlow(p *testutil.LinkPair, seq uint32, flow uint16) []byte {
	return udpFrame(p, seq, flow, 64)
}

// udpFrame is udpFlow's frame in size bytes (64 or more); above 64 its
// payload after the sequence number is a pattern of seq.
func udpFrame(p *testutil.LinkPair, seq uint32, flow uint16, size int) []byte {
	f := make([]byte, size)
	for i := 64; i < size; i++ {
		f[i] = byte(uint32(i)*7 + seq)
	}
	copy(f[0:6], p.B.MAC)
	copy(f[6:12], p.A.MAC)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 2, 17 // TTL 2: forwarded with dec_ttl and back, it expires (TestRunForward)
	binary.BigEndian.PutUint16(ip[2:4], uint16(size-14))
	copy(ip[12:16], p.A.IP)
	copy(ip[16:20], p.B.IP)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:12], ^uint16(sum))
	binary.BigEndian.PutUint16(f[34:36], 40000+flow)
	binary.BigEndian.PutUint16(f[36:38], 9)
	binary.BigEndian.PutUint16(f[38:40], uint16(size-34))
	binary.BigEndian.PutUint32(f[42:46], seq)
	return f
}

// swappedTest recognises a test frame that came back with MACs swapped.
func swappedTest(p *testutil.LinkPair) func([]byte) bool {
	return func(f []byte) bool {
		return len(f) >= 46 && string(f[0:6]) == string(p.A.MAC) && string(f[6:12]) == string(p.B.MAC) &&
			binary.BigEndian.Uint16(f[36:38]) == 9 && f[23] == 17
	}
}

// sendFrames sends n frames from A with at most window outstanding
// against got().
func sendFrames(t *testing.T, s *testutil.PacketSocket, p *testutil.LinkPair, n, window int, got func() int64) {
	t.Helper()
	sendFlows(t, s, p, 0, n, window, 1, got)
}

// sendFlows is sendFrames over flows source ports, for the n sequence
// numbers from first on.
func sendFlows(t *testing.T, s *testutil.PacketSocket, p *testutil.LinkPair, first, n, window, flows int, got func() int64) {
	t.Helper()
	s.SendWindow(t, first, n, window, got, func(i int) []byte { return udpFlow(p, uint32(i), uint16(i%flows)) })
}

// sendSized sends n frames of size bytes (udpFrame) from A with at most
// 32 outstanding against got().
func sendSized(t *testing.T, s *testutil.PacketSocket, p *testutil.LinkPair, n, size int, got func() int64) {
	t.Helper()
	s.SendWindow(t, 0, n, 32, got, func(i int) []byte { return udpFrame(p, uint32(i), 0, size) })
}

// waitBack waits until n frames came back to s, and checks that no more
// did.
func waitBack(t *testing.T, s *testutil.PacketSocket, n int64) {
	t.Helper()
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if got := s.Received(); got < n {
			return fmt.Errorf("%d frames back, sent %d", got, n)
		}
		return nil
	})
	// Kept: the claim is that nothing more comes back, which leaves no
	// event to wait for; a frame sent back twice would come within this.
	time.Sleep(50 * time.Millisecond)
	if got := s.Received(); got != n {
		t.Fatalf("%d frames back, sent %d", got, n)
	}
}

// scrape fetches /metrics from addr inside ns.
func scrape(t *testing.T, ns *testutil.NetNS, addr string) string {
	t.Helper()
	body := httpGet(t, ns, addr, "/metrics")
	if !strings.HasPrefix(body, "HTTP/1.0 200") {
		t.Fatalf("scrape: %.300s", body)
	}
	return body
}

// httpGet fetches path from addr inside ns with a plain HTTP/1.0 request
// (the connection is made on the namespace's thread) and returns the
// whole response.
func httpGet(t *testing.T, ns *testutil.NetNS, addr, path string) string {
	t.Helper()
	var body string
	ns.MustDo(t, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
		b, err := io.ReadAll(c)
		body = string(b)
		return err
	})
	return body
}

// TestPprofOnlyWhenAsked: /debug/pprof is not on the metrics address; it
// is served on --pprof's, when given.
func TestPprofOnlyWhenAsked(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	metrics, prof := freePort(t, p.B.NS), freePort(t, p.B.NS)
	for prof == metrics {
		prof = freePort(t, p.B.NS)
	}
	proc := startRun(t, p.B.NS, "--iface", p.B.Name, "--stages", "count", "--metrics", metrics, "--pprof", prof, "--interval", "0s")
	if body := httpGet(t, p.B.NS, metrics, "/debug/pprof/"); !strings.HasPrefix(body, "HTTP/1.0 404") {
		t.Errorf("/debug/pprof/ on the metrics address: %.100s", body)
	}
	if body := httpGet(t, p.B.NS, prof, "/debug/pprof/"); !strings.HasPrefix(body, "HTTP/1.0 200") || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ on --pprof's address: %.100s", body)
	}
	if _, code := proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// metric returns the value of the sample of name whose labels contain all
// of want (`queue="0"`...), summed over matching samples.
func metric(t *testing.T, body, name string, want ...string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	var sum float64
	found := false
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		ok := true
		for _, w := range want {
			if !strings.Contains(m[1], w) {
				ok = false
			}
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
			found = true
		}
	}
	if !found {
		t.Fatalf("no metric %s%v in:\n%s", name, want, body)
	}
	return sum
}

const testRules = `default: drop
malformed: drop
rules:
  - priority: 10
    name: test-frames
    proto: udp
    dport: 9
    action: redirect
`

func freePort(t *testing.T, ns *testutil.NetNS) string {
	var addr string
	ns.MustDo(t, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr = l.Addr().String()
		return l.Close()
	})
	return addr
}

// l2fwdConfig writes a run config for B of p with settings (YAML lines)
// and the stages filter (testRules), count, pcap (with pcapOpts) and
// macswap, in wakeup mode and testutil.Bind's bind mode. It returns the
// config's path and the capture's.
func l2fwdConfig(t *testing.T, p *testutil.LinkPair, settings, pcapOpts string) (cfg, pcapFile string) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(testRules), 0o644)
	pcapFile = filepath.Join(dir, "cap.pcap")
	cfg = filepath.Join(dir, "run.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`interfaces: [%s]
poll: wakeup
bind: %s
%sstages:
  - filter: {rules: %s}
  - count
  - pcap: {path: %s%s}
  - macswap
`, p.B.Name, testutil.Bind(), settings, rulesFile, pcapFile, pcapOpts)), 0o644)
	return cfg, pcapFile
}

// TestRunL2fwdMetricsPcap runs the daemon with filter, count, pcap and
// macswap on a veth end: every frame comes back swapped, /metrics counters
// match what was sent, the pcap holds every frame (gopacket-free check with
// tshark), and SIGTERM stops it with every frame accounted for.
func TestRunL2fwdMetricsPcap(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "tshark")
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	cfg, pcapFile := l2fwdConfig(t, p, "queues: all\nring: 512\ncpus: \"1\"\n", ", snaplen: 64")
	addr := freePort(t, p.B.NS)
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	proc := startRun(t, p.B.NS, "--config", cfg, "--metrics", addr, "--interval", "200ms")
	n := testutil.Frames(3000)
	sendFrames(t, back, p, n, 128, back.Received)
	waitBack(t, back, int64(n))
	body := scrape(t, p.B.NS, addr)
	if v := metric(t, body, "xdpipe_stage_packets_total", `stage="count"`); v != float64(n) {
		t.Errorf("count stage %v, sent %d", v, n)
	}
	if v := metric(t, body, "xdpipe_filter_rule_hits_total", `rule="test-frames"`); v != float64(n) {
		t.Errorf("rule hits %v, sent %d", v, n)
	}
	rx := metric(t, body, "xdpipe_rx_packets_total", `iface="`+p.B.Name+`"`, `queue="0"`)
	tx := metric(t, body, "xdpipe_tx_packets_total", `iface="`+p.B.Name+`"`)
	drops := metric(t, body, "xdpipe_drops_total", `reason="verdict"`)
	if tx != float64(n) || rx != tx+drops {
		t.Errorf("metrics: rx %v tx %v verdict drops %v, sent %d", rx, tx, drops, n)
	}
	metric(t, body, "xdpipe_burst_size_bucket", `le="64"`)
	metric(t, body, "xdpipe_umem_frames", `place="fill"`)
	metric(t, body, "xdpipe_drops_total", `reason="xsk_rx_ring_full"`)
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(proc.output(), "queue 0: rx") },
		"no rate line (--interval 200ms)")
	out, code := proc.stop(t, syscall.SIGTERM)
	if code != 0 || !regexp.MustCompile(`all \d+ frames accounted for`).MatchString(out) || !strings.Contains(out, "queue 0: rx") ||
		!strings.Contains(out, "cpus=[1]") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	noXDP(t, &p.B)
	if c := len(tsharkFields(t, pcapFile, "frame.number")); c != n {
		t.Fatalf("tshark read %d frames, sent %d", c, n)
	}
	t.Logf("%s", out)
}

// tsharkFields reads a field of every frame of a capture with tshark
// (gopacket-free).
func tsharkFields(t *testing.T, file, field string) []string {
	t.Helper()
	o, err := exec.Command("tshark", "-r", file, "-T", "fields", "-e", field).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	return strings.Fields(string(o))
}

// TestRunSIGHUPUnderTraffic reloads stages (and rules) several times while
// frames flow: nothing is lost, the sockets stay open.
func TestRunSIGHUPUnderTraffic(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(testRules), 0o644)
	cfg := filepath.Join(dir, "run.yaml")
	write := func(extra string) {
		// The steering rules change too: the rule is renamed on each reload.
		r := strings.Replace(testRules, "test-frames", fmt.Sprintf("test-frames-%d", len(extra)), 1)
		os.WriteFile(rulesFile+".tmp", []byte(r), 0o644)
		os.Rename(rulesFile+".tmp", rulesFile)
		os.WriteFile(cfg+".tmp", []byte(fmt.Sprintf("interfaces: [%s]\nrules: %s\nstages:\n  - count\n%s  - macswap\n",
			p.B.Name, rulesFile, extra)), 0o644)
		os.Rename(cfg+".tmp", cfg)
	}
	write("")
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	proc := startRun(t, p.B.NS, "--config", cfg, "--metrics", "off", "--poll", "wakeup", "--interval", "0s", "--bind", testutil.Bind())
	// Ten rounds of frames, a reload signalled after each of the first
	// nine while up to a window of frames is still on its way.
	n := testutil.Frames(20000) / 10 * 10
	extras := []string{"  - rewrite: {dscp: 10}\n", "  - sample: {every: 10}\n", "", "  - count\n"}
	for i := range 10 {
		sendFlows(t, back, p, i*n/10, n/10, 128, 1, back.Received)
		if i < 9 {
			write(extras[i%len(extras)])
			proc.cmd.Process.Signal(syscall.SIGHUP)
		}
	}
	waitBack(t, back, int64(n))
	out, code := proc.stop(t, syscall.SIGINT)
	reloads := strings.Count(out, "run: reloaded")
	if code != 0 || reloads < 3 || !strings.Contains(out, "frames accounted for") {
		t.Fatalf("exit %d, %d reloads:\n%s", code, reloads, out)
	}
	t.Logf("%d reloads under %d frames, none lost", reloads, n)
}

// TestRunMultiQueue: two queues on each veth end, queues "all", one worker
// per queue, with one UMEM per queue and with one shared UMEM: every frame
// of 16 flows comes back, and the per-queue counters add up.
func TestRunMultiQueue(t *testing.T) {
	testutil.RequireRoot(t)
	for _, umem := range []string{"per-queue", "shared"} {
		t.Run(umem, func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{Queues: 2})
			addr := freePort(t, p.B.NS)
			// The steering program redirects only the test frames; the
			// namespaces' IPv6 chatter goes to the kernel.
			rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
			os.WriteFile(rulesFile, []byte(testRules), 0o644)
			back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
			proc := startRun(t, p.B.NS, "--iface", p.B.Name, "--queues", "all", "--umem", umem, "--stages", "count,macswap",
				"--rules", rulesFile, "--poll", "wakeup", "--ring", "512", "--metrics", addr, "--interval", "0s", "--bind", testutil.Bind())
			n := testutil.Frames(4000)
			sendFlows(t, back, p, 0, n, 128, 16, back.Received)
			waitBack(t, back, int64(n))
			body := scrape(t, p.B.NS, addr)
			q0 := metric(t, body, "xdpipe_tx_packets_total", `queue="0"`)
			q1 := metric(t, body, "xdpipe_tx_packets_total", `queue="1"`)
			if q0+q1 != float64(n) {
				t.Fatalf("queue 0 sent %v, queue 1 %v: want %d in all", q0, q1, n)
			}
			if hits := metric(t, body, "xdpipe_steer_rule_hits_total", `rule="test-frames"`); hits != float64(n) {
				t.Errorf("steering rule hits %v, want %d", hits, n)
			}
			// The flow cache keys a flow by the fields rules use: the 16
			// flows differ in none of them, so they miss once per CPU
			// they land on, and the namespaces' chatter adds a few; the
			// other frames are hits.
			if misses := metric(t, body, "xdpipe_steer_cache_misses_total"); misses < 1 || misses >= float64(n)/2 {
				t.Errorf("flow cache misses %v for %d frames, want at least 1 and most frames hits", misses, n)
			}
			out, code := proc.stop(t, syscall.SIGTERM)
			want := 2
			if umem == "shared" {
				want = 1
			}
			if code != 0 || strings.Count(out, "frames accounted for") != want {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			t.Logf("%s umem: queue 0 %v frames, queue 1 %v", umem, q0, q1)
		})
	}
}

// TestRunPcapDiskFull: the pcap stage writes to a 64 KiB tmpfs that fills up
// under traffic: the failure is reported and counted, and every frame is
// still forwarded.
func TestRunPcapDiskFull(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	os.Mkdir(small, 0o755)
	testutil.MustRun(t, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small)
	t.Cleanup(func() { exec.Command("umount", small).Run() })
	cfg := filepath.Join(dir, "run.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("interfaces: [%s]\nstages:\n  - pcap: {path: %s/cap.pcap, buffer: 4096}\n  - macswap\n",
		p.B.Name, small)), 0o644)
	addr := freePort(t, p.B.NS)
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	proc := startRun(t, p.B.NS, "--config", cfg, "--metrics", addr, "--poll", "wakeup", "--interval", "0s", "--bind", testutil.Bind())
	const n = 3000
	sendFrames(t, back, p, n, 128, back.Received)
	waitBack(t, back, n)
	body := scrape(t, p.B.NS, addr)
	errs := metric(t, body, "xdpipe_stage_errors_total", `stage="pcap"`)
	lost := metric(t, body, "xdpipe_stage_lost_total", `stage="pcap"`)
	written := metric(t, body, "xdpipe_stage_packets_total", `stage="pcap"`)
	out, code := proc.stop(t, syscall.SIGTERM)
	if errs == 0 || lost == 0 || !strings.Contains(out, "pcap capture failing") || code != 0 {
		t.Fatalf("errors %v lost %v written %v, exit %d:\n%s", errs, lost, written, code, out)
	}
	t.Logf("all %d frames forwarded; pcap wrote %v, lost %v, %v errors", n, written, lost, errs)
}

// TestRunForward: the daemon holds both ends of one pair as two ports (one
// namespace, one UMEM shared by their sockets, one poll on both) and
// forwards what arrives on B out of A, decrementing the TTL as a router
// would. The frame comes back in on B with TTL 1 and expires there,
// counted: every frame goes out once and comes back once. On NICs that is
// forwarding between two zero-copy sockets. (No VLAN tag to tell the
// frames apart: qemu's virtio-net drops VLANs the guest did not add, and
// a host may have no 8021q.)
func TestRunForward(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("64", func(t *testing.T) { testRunForward(t, 64) })
	t.Run("9000", func(t *testing.T) {
		if testutil.Bind() == "zerocopy" {
			t.Skip("copy mode only: virtio-net's zero-copy takes one buffer a packet (TestZeroCopyJumbo)")
		}
		testRunForward(t, 9000)
	})
}

// testRunForward is TestRunForward with frames of size bytes, on a pair
// whose MTU takes them: 9000 forwards multi-buffer packets.
func testRunForward(t *testing.T, size int) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{OneNS: true, MTU: max(size, 1500)})
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(testRules), 0o644)
	cfg := filepath.Join(dir, "run.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`interfaces: [%s, %s]
poll: wakeup
bind: %s
stages:
  - filter: {rules: %s}
  - rewrite: {src_mac: "%s", dst_mac: "%s", dec_ttl: true}
  - forward: {to: %s}
`, p.B.Name, p.A.Name, testutil.Bind(), rulesFile, p.A.MAC, p.B.MAC, p.A.Name)), 0o644)
	src := testutil.OpenPacketSocket(t, &p.A, func([]byte) bool { return false })
	addr := freePort(t, p.B.NS)
	proc := startRun(t, p.B.NS, "--config", cfg, "--metrics", addr, "--interval", "0s")
	// What came back and expired, scraped at most every 20 ms (the sender
	// asks per frame).
	var expired int64
	var scraped time.Time
	back := func() int64 {
		if time.Since(scraped) > 20*time.Millisecond {
			expired = int64(metric(t, scrape(t, p.B.NS, addr), "xdpipe_stage_lost_total", `stage="rewrite"`))
			scraped = time.Now()
		}
		return expired
	}
	n := testutil.Frames(3000)
	if size == 64 {
		sendFlows(t, src, p, 0, n, 128, 1, back)
	} else {
		n = testutil.Frames(300)
		sendSized(t, src, p, n, size, back)
	}
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if b := back(); b < int64(n) {
			return fmt.Errorf("sent %d: %d came back and expired", n, b)
		}
		return nil
	})
	body := scrape(t, p.B.NS, addr)
	came := metric(t, body, "xdpipe_stage_lost_total", `stage="rewrite"`)
	went := metric(t, body, "xdpipe_tx_packets_total", `iface="`+p.A.Name+`"`)
	out, code := proc.stop(t, syscall.SIGTERM)
	if came != float64(n) || went != float64(n) {
		t.Errorf("sent %d: %v forwarded out of %s, %v came back and expired\n%s", n, went, p.A.Name, came, out)
	}
	if code != 0 || strings.Count(out, "frames accounted for") != 1 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// TestRunRulesReachRunning: `xdpipe rules` lists and changes the rules of
// a running `xdpipe run` through its pinned maps, and the pins go when it
// stops (the program was never pinned: it detaches with the process).
func TestRunRulesReachRunning(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	pinDir := t.TempDir()
	testutil.MustRun(t, "mount", "-t", "bpf", "bpffs", pinDir)
	t.Cleanup(func() { testutil.MustRun(t, "umount", pinDir) })
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte("rules:\n  - priority: 10\n    name: gen\n    proto: udp\n    dport: 9\n    action: redirect\n"), 0o644)
	more := filepath.Join(dir, "more.yaml")
	os.WriteFile(more, []byte("rules:\n  - priority: 20\n    name: dns\n    proto: udp\n    dport: 53\n    action: drop\n"), 0o644)

	r := startRun(t, p.B.NS, "--iface", p.B.Name, "--stages", "count", "--metrics", "off", "--rules", rulesFile, "--pin-dir", pinDir)
	pin := pinOf(t, &p.B, pinDir)
	if out, code := xdpipeIn(t, nil, "rules", "add", "--pin", pin, more); code != 0 {
		t.Fatalf("rules add against the running instance: exit %d:\n%s", code, out)
	}
	out, code := xdpipeIn(t, nil, "rules", "list", "--pin", pin)
	if code != 0 || !strings.Contains(out, "gen") || !strings.Contains(out, "dns") {
		t.Fatalf("rules list: exit %d, want the file's rule and the added one:\n%s", code, out)
	}
	if out, code := r.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("run exited %d:\n%s", code, out)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pins under %s left after a clean stop (%v)", pin, err)
	}
	if out, code := xdpipeIn(t, nil, "rules", "list", "--pin", pin); code == 0 || !strings.Contains(out, "no running xdpipe instance") {
		t.Errorf("rules list after the stop: exit %d, want 'no running xdpipe instance':\n%s", code, out)
	}
	noXDP(t, &p.B)
}

// TestRunRxDelay: with --rx-delay and steering rules, the steering
// program stamps the frames it redirects and /metrics has the delay of
// every frame the worker received, and none without the flag.
func TestRunRxDelay(t *testing.T) {
	testutil.RequireRoot(t)
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
			if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
				t.Fatal(err)
			}
			pinDir := t.TempDir()
			testutil.MustRun(t, "mount", "-t", "bpf", "bpffs", pinDir)
			t.Cleanup(func() { testutil.MustRun(t, "umount", pinDir) })
			addr := freePort(t, p.B.NS)
			back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
			proc := startRun(t, p.B.NS, "--iface", p.B.Name, "--queues", "0", "--stages", "count,macswap", "--rules", rulesFile,
				"--poll", "wakeup", "--metrics", addr, "--interval", "1h", "--rx-delay="+strconv.FormatBool(on), "--rx-delay-sample", "1", "--pin-dir", pinDir)
			n := testutil.Frames(2000)
			sendFrames(t, back, p, n, 128, back.Received)
			waitBack(t, back, int64(n))
			body := scrape(t, p.B.NS, addr)
			out, code := proc.stop(t, syscall.SIGTERM)
			if code != 0 || strings.Contains(out, "rx delay of one frame in 1 per CPU") != on {
				t.Fatalf("exit %d, rx delay %v on the ready line:\n%s", code, on, out)
			}
			if !on {
				if strings.Contains(body, "xdpipe_rx_delay_seconds") {
					t.Fatalf("xdpipe_rx_delay_seconds without --rx-delay:\n%s", body)
				}
				return
			}
			rx := metric(t, body, "xdpipe_rx_packets_total", `queue="0"`)
			count := metric(t, body, "xdpipe_rx_delay_seconds_count", `queue="0"`)
			sum := metric(t, body, "xdpipe_rx_delay_seconds_sum", `queue="0"`)
			if count != float64(n) || rx != count || sum <= 0 {
				t.Fatalf("rx delay of %v frames summing to %v s; received %v, sent %d", count, sum, rx, n)
			}
			t.Logf("mean rx delay %.1f µs over %v frames", sum/count*1e6, count)
		})
	}
}

// TestRunRxMetadata: with --rx-metadata on two interfaces, each whose
// driver offers RX metadata gets its own program bound to it (driver
// mode), the start lines say which RX metadata each driver offers, and
// frames flow, stamped too. On the VM's NICs only B's reports hashes: A's
// driver offers none, and A gets an unbound program, with a warning.
func TestRunRxMetadata(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireRxHash(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{OneNS: true})
	src := testutil.OpenPacketSocket(t, &p.A, func([]byte) bool { return false })
	addr := freePort(t, p.B.NS)
	proc := startRun(t, p.B.NS, "--iface", p.B.Name+","+p.A.Name, "--queues", "0", "--stages", "count", "--poll", "wakeup",
		"--rx-metadata", "--rx-delay", "--rx-delay-sample", "1", "--metrics", addr, "--interval", "0s")
	n := testutil.Frames(1000)
	received := func() int64 {
		return int64(metric(t, scrape(t, p.B.NS, addr), "xdpipe_stage_packets_total", `stage="count"`))
	}
	sendFrames(t, src, p, n, 128, received)
	testutil.Eventually(t, 10*time.Second, func() bool { return received() >= int64(n) }, "fewer than %d frames counted", n)
	body := scrape(t, p.B.NS, addr)
	rx := metric(t, body, "xdpipe_rx_packets_total", `queue="0"`)
	if d := metric(t, body, "xdpipe_rx_delay_seconds_count", `queue="0"`); d != rx {
		t.Errorf("rx delay of %v frames, %v received", d, rx)
	}
	out, code := proc.stop(t, syscall.SIGTERM)
	offers := map[string]string{p.B.Name: "timestamp,hash,vlan-tag", p.A.Name: "timestamp,hash,vlan-tag"}
	bound := 2
	if p.Kind == testutil.NIC {
		offers = map[string]string{p.B.Name: "hash", p.A.Name: "none"}
		bound = 1
		if !strings.Contains(out, "the driver offers no XDP RX metadata: packets carry none") {
			t.Errorf("no warning that %s's driver offers no RX metadata", p.A.Name)
		}
	}
	for name, want := range offers {
		re := regexp.MustCompile(`run: ` + name + `: xdp-features basic,redirect,\S* xdp-rx-metadata (\S+)`)
		if m := re.FindStringSubmatch(out); m == nil || m[1] != want {
			t.Errorf("%s: start line %q, want xdp-rx-metadata %s", name, m, want)
		}
	}
	if c := strings.Count(out, "rx_metadata=true"); code != 0 || c != bound+1 { // the bound ports and the running line
		t.Fatalf("exit %d, rx_metadata=true %d times (want %d ports' and the running line):\n%s", code, c, bound, out)
	}
}

// TestRunStartLines: after the ready line, one line per interface shows
// its XDP features and the bind mode, with why auto bound copy mode.
func TestRunStartLines(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	r := startRun(t, p.B.NS, "--iface", p.B.Name, "--queues", "0", "--stages", "count", "--metrics", "off", "--interval", "1h")
	out, code := r.stop(t, syscall.SIGINT)
	want := "run: " + p.B.Name + ": xdp-features basic,redirect,"
	mode := "zc-max-segs 0, AF_XDP copy mode (auto: driver veth has no xsk-zerocopy in its xdp-features)"
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, mode) {
		t.Fatalf("exit %d; want lines with %q and %q:\n%s", code, want, mode, out)
	}
}

// TestRunJumbo: on an MTU 9000 link, run binds multi-buffer and l2fwd
// (filter, count, pcap, macswap) sends every 9000-byte frame back whole:
// n frames in, the same n frames out, MACs swapped and every other byte
// as sent; the kernel drops none, and the capture holds the whole frames.
func TestRunJumbo(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.Bind() == "zerocopy" {
		t.Skip("copy mode only: TestZeroCopyJumbo has the zero-copy outcome (virtio-net's zero-copy takes one buffer a packet)")
	}
	testutil.RequireTool(t, "tshark")
	const size = 9000
	p := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: size})
	cfg, pcapFile := l2fwdConfig(t, p, "queues: \"0\"\n", "")
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	r := startRun(t, p.B.NS, "--config", cfg, "--metrics", "off", "--interval", "1h")
	n := testutil.Frames(300)
	sendSized(t, back, p, n, size, back.Received)
	waitBack(t, back, int64(n))
	out, code := r.stop(t, syscall.SIGINT)
	if code != 0 || strings.Contains(out, "does not take multi-buffer") || !regexp.MustCompile(`all \d+ frames accounted for`).MatchString(out) {
		t.Fatalf("run exited %d:\n%s", code, out)
	}
	if m := regexp.MustCompile(`kernel dropped (\d+) before the worker`).FindStringSubmatch(out); m != nil && m[1] != "0" {
		t.Errorf("the kernel dropped %s frames:\n%s", m[1], out)
	}
	seen := make([]bool, n)
	for _, f := range back.Frames() {
		seq := binary.BigEndian.Uint32(f[42:46])
		if int(seq) >= n || seen[seq] {
			t.Fatalf("frame %d: out of range or twice", seq)
		}
		want := udpFrame(p, seq, 0, size)
		copy(want[0:6], p.A.MAC)
		copy(want[6:12], p.B.MAC)
		if string(f) != string(want) {
			t.Fatalf("frame %d came back different (%d bytes, want %d)", seq, len(f), len(want))
		}
		seen[seq] = true
	}
	lens := tsharkFields(t, pcapFile, "frame.cap_len")
	if len(lens) != n || lens[0] != strconv.Itoa(size) || lens[n-1] != strconv.Itoa(size) {
		t.Fatalf("capture: %d frames (want %d), first %v bytes", len(lens), n, lens[:min(1, len(lens))])
	}
	t.Logf("%s", out)
}

// TestRunFlagsOverrideTheFile: a flag given on the command line wins over
// the configuration file's setting; a setting no flag names stays the
// file's.
func TestRunFlagsOverrideTheFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "xdpipe.yaml")
	if err := os.WriteFile(file, []byte("interfaces: [xa]\npoll: spin\nburst: 32\nring: 4096\nrx_delay_sample: 8\nmetrics: off\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := parseRunFlags([]string{"--config", file, "--poll", "wakeup", "--burst", "16", "--rx-delay", "--pprof", "127.0.0.1:6060"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Poll != "wakeup" || c.Burst != 16 || !c.RxDelay || c.Pprof != "127.0.0.1:6060" ||
		c.Ring != 4096 || c.RxDelaySample != 8 || c.Metrics != "off" || len(c.Interfaces) != 1 {
		t.Fatalf("config %+v: want the flags' poll, burst, rx_delay and pprof, the file's ring, sample, metrics and interface", c)
	}
}

// TestRunNamesWhatSetsWhatIsMissing: the daemon says what it misses (no
// interfaces, no stages); run adds the key and the flag that set it.
func TestRunNamesWhatSetsWhatIsMissing(t *testing.T) {
	check := func(want string, args ...string) {
		t.Helper()
		f, err := parseRunFlags(append([]string{"--check", "--metrics", "off"}, args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkRun(f, io.Discard); err == nil || err.Error() != want {
			t.Errorf("%v: %v, want %q", args, err, want)
		}
	}
	check("no interfaces: set interfaces in the config or --iface", "--stages", "count")
	// The interface is checked before the stages: it must be there.
	testutil.RequireRoot(t)
	check("no stages: list them in the config or with --stages", "--iface", "lo")
}
