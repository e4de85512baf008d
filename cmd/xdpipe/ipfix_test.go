package main

import (
	"encoding/csv"
	"fmt"
	"net"
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

// startNfcapd runs Debian's nfcapd (the nfdump package's collector) in ns,
// listening on addr:port and writing into dir, and returns a function that
// stops it (SIGTERM: it writes out its file) and waits for it to exit.
func startNfcapd(t *testing.T, ns *testutil.NetNS, addr net.IP, port int, dir string) (stop func()) {
	t.Helper()
	testutil.RequireTool(t, "nfcapd", "nfdump", "ss")
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nfcapd", "-w", dir, "-b", addr.String(), "-p", strconv.Itoa(port), "-t", "3600")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("nfcapd did not stop on SIGTERM:\n%s", out.String())
		}
	}
	t.Cleanup(stop)
	// Ready once its socket is bound.
	want := fmt.Sprintf("%s:%d", addr, port)
	testutil.Eventually(t, 10*time.Second, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("nfcapd exited (%v) before listening:\n%s", err, out.String())
		default:
		}
		o, _ := ns.Run("ss", "-Hlun")
		return strings.Contains(o, want)
	}, "nfcapd not listening on %s", want)
	return stop
}

// nfdumpFlows reads the flows nfcapd wrote into dir with nfdump's CSV
// output, the records of one flow (5-tuple) aggregated: each is its
// fields keyed by the column names (sa, sp, ipkt, ibyt...).
func nfdumpFlows(t *testing.T, dir string) []map[string]string {
	t.Helper()
	out, err := exec.Command("nfdump", "-R", dir, "-a", "-o", "csv", "-N").CombinedOutput()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, out)
	}
	r := csv.NewReader(strings.NewReader(string(out)))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("nfdump csv: %v\n%s", err, out)
	}
	var flows []map[string]string
	var head []string
	for _, row := range rows {
		if len(row) < 5 {
			continue
		}
		if head == nil {
			head = row
			continue
		}
		if len(row) != len(head) {
			continue
		}
		f := map[string]string{}
		for i, h := range head {
			f[h] = strings.TrimSpace(row[i])
		}
		flows = append(flows, f)
	}
	if head == nil {
		t.Fatalf("nfdump printed no CSV header:\n%s", out)
	}
	return flows
}

// ipfixBed is a veth pair with nfcapd listening on B's address in B's
// namespace and `xdpipe run` on B, steering the test frames (UDP to port
// 9) into stages, the ipfix stage's collector being nfcapd.
type ipfixBed struct {
	p          *testutil.LinkPair
	flowDir    string // nfcapd's files
	stopNfcapd func()
	run        *runProc
	metrics    string // run's metrics address
}

// newIPFIXBed starts the bed; stages is the config's stages list, where
// %s is the collector's address.
func newIPFIXBed(t *testing.T, stages string) *ipfixBed {
	t.Helper()
	b := &ipfixBed{p: testutil.NewLinkPair(t, testutil.LinkOptions{})}
	dir := t.TempDir()
	b.flowDir = filepath.Join(dir, "flows")
	os.Mkdir(b.flowDir, 0o755)
	const port = 4739
	b.stopNfcapd = startNfcapd(t, b.p.B.NS, b.p.B.IP, port, b.flowDir)
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(testRules), 0o644)
	cfg := filepath.Join(dir, "run.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("interfaces: [%s]\nrules: %s\npoll: wakeup\nbind: %s\nring: 2048\nstages:\n%s",
		b.p.B.Name, rulesFile, testutil.Bind(), fmt.Sprintf(stages, fmt.Sprintf("%s:%d", b.p.B.IP, port)))), 0o644)
	b.metrics = freePort(t, b.p.B.NS)
	b.run = startRun(t, b.p.B.NS, "--config", cfg, "--metrics", b.metrics, "--interval", "0s")
	return b
}

// TestRunIPFIXToNfcapd: gen sends N frames over F flows to `xdpipe run`
// with an ipfix stage exporting to Debian's nfcapd in the same namespace,
// half of them before a reload (SIGHUP) and half after; once run stops
// (and exports every flow) nfdump reads back F flows of the generated
// tuple whose packets and bytes (IP lengths) add up to what gen sent, and
// nfcapd saw no gap in the sequence numbers, across the reload too.
func TestRunIPFIXToNfcapd(t *testing.T) {
	testutil.RequireRoot(t)
	b := newIPFIXBed(t, "  - count\n  - ipfix: {collector: \"%s\", active_timeout: 60s, idle_timeout: 15s, max_flows: 1024}\n")
	p, proc := b.p, b.run
	const flows, size = 7, 128
	n := testutil.Frames(3000) / 2 * 2
	gen := func() {
		out, code := xdpipeIn(t, p.A.NS, genFrom(p, n/2, "20k", "--flows", strconv.Itoa(flows), "--size", strconv.Itoa(size))...)
		if code != 0 || !strings.Contains(out, fmt.Sprintf("sent %d frames", n/2)) {
			t.Fatalf("gen exited %d:\n%s", code, out)
		}
	}
	gen()
	proc.cmd.Process.Signal(syscall.SIGHUP)
	for reloaded := false; !reloaded; {
		select {
		case line := <-proc.lines:
			reloaded = line == "run: reloaded"
		case <-time.After(20 * time.Second):
			t.Fatalf("no reload 20s after SIGHUP:\n%s", proc.output())
		}
	}
	gen()
	// Every frame through the stages before the stop.
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if c := metric(t, scrape(t, p.B.NS, b.metrics), "xdpipe_stage_packets_total", `stage="count"`); c < float64(n) {
			return fmt.Errorf("the count stage saw %v of the %d frames sent", c, n)
		}
		return nil
	})
	runOut, code := proc.stop(t, syscall.SIGTERM)
	if code != 0 {
		t.Fatalf("run exited %d:\n%s", code, runOut)
	}
	b.stopNfcapd() // it writes out the flows it holds
	var pkts, bytes uint64
	got := 0
	in := strconv.Itoa(p.B.Ifindex(t))
	for _, f := range nfdumpFlows(t, b.flowDir) {
		if f["sa"] != p.A.IP.String() || f["da"] != p.B.IP.String() || f["dp"] != "9" || f["pr"] != "UDP" {
			t.Logf("another flow: %v", f)
			continue
		}
		got++
		if f["in"] != in {
			t.Errorf("flow from port %s: input interface %s, want %s", f["sp"], f["in"], in)
		}
		ip, _ := strconv.ParseUint(f["ipkt"], 10, 64)
		ib, _ := strconv.ParseUint(f["ibyt"], 10, 64)
		pkts += ip
		bytes += ib
	}
	wantBytes := uint64(n) * (size - 14) // IP header and payload
	if got != flows || pkts != uint64(n) || bytes != wantBytes {
		t.Errorf("nfdump read %d flows, %d packets, %d bytes; gen sent %d flows, %d packets, %d bytes of IP",
			got, pkts, bytes, flows, n, wantBytes)
	}
	// nfcapd checked the sequence numbers.
	if o, err := exec.Command("nfdump", "-R", b.flowDir, "-I").CombinedOutput(); err != nil || !strings.Contains(string(o), "Sequence failures: 0\n") {
		t.Errorf("nfdump -I: %v\n%s", err, o)
	}
	t.Logf("nfcapd received %d flows, %d packets, %d bytes", got, pkts, bytes)
}

// TestRunIPFIXCollectorGone: the collector stops in the middle of the
// traffic; every frame still comes back (l2fwd), and the records that
// could not be sent are counted in the metrics.
func TestRunIPFIXCollectorGone(t *testing.T) {
	testutil.RequireRoot(t)
	// A table of 4 flows under 64: nearly every frame evicts, and exports.
	b := newIPFIXBed(t, "  - ipfix: {collector: \"%s\", max_flows: 4}\n  - macswap\n")
	p := b.p
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	n := testutil.Frames(4000) / 2 * 2
	sendFlows(t, back, p, 0, n/2, 128, 64, back.Received)
	waitBack(t, back, int64(n/2))
	b.stopNfcapd()
	sendFlows(t, back, p, n/2, n/2, 128, 64, back.Received)
	waitBack(t, back, int64(n))
	body := scrape(t, p.B.NS, b.metrics)
	exported := metric(t, body, "xdpipe_ipfix_records_exported_total")
	failed := metric(t, body, "xdpipe_ipfix_records_failed_total")
	evicted := metric(t, body, "xdpipe_ipfix_records_evicted_total")
	if got := back.Received(); got != int64(n) || exported == 0 || failed == 0 || evicted < float64(n/2) {
		t.Errorf("%d of %d frames back; records exported %v, failed %v, evicted %v: want all back, some exported, some failed",
			got, n, exported, failed, evicted)
	}
	if out, code := b.run.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("run exited %d:\n%s", code, out)
	}
	t.Logf("%d frames back; records exported %v, failed %v, evicted %v", n, exported, failed, evicted)
}
