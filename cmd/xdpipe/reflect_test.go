package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

const reflectPort = 11111

// startReflector runs `xdpipe run` on p's B end with the reflect stage
// (its options as YAML, "" for none) behind a rule that steers only UDP to
// reflectPort to the socket: ARP and the rest go to the kernel.
func startReflector(t *testing.T, p *testutil.LinkPair, opts string) *runProc {
	t.Helper()
	pinDir := t.TempDir()
	testutil.MustRun(t, "mount", "-t", "bpf", "bpffs", pinDir)
	t.Cleanup(func() { testutil.MustRun(t, "umount", pinDir) })
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	rules := fmt.Sprintf("rules:\n  - priority: 10\n    name: reflected\n    proto: udp\n    dport: %d\n    action: redirect\n", reflectPort)
	if err := os.WriteFile(rulesFile, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	stage := "reflect"
	if opts != "" {
		stage = "{reflect: " + opts + "}"
	}
	cfg := filepath.Join(dir, "xdpipe.yaml")
	conf := fmt.Sprintf("interfaces: [%s]\nqueues: all\nbind: %s\nrules: %s\npin_dir: %s\nstages: [%s]\n",
		p.B.Name, testutil.Bind(), rulesFile, pinDir, stage)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startRun(t, p.B.NS, "--config", cfg, "--metrics", "off", "--interval", "1h")
}

// runTotalsRE matches run's summary for a queue.
var runTotalsRE = regexp.MustCompile(`run: queue \d+: received (\d+), transmitted (\d+)`)

// runTotals adds up what run's summary says it received and transmitted.
func runTotals(t *testing.T, out string) (rx, tx uint64) {
	t.Helper()
	m := runTotalsRE.FindAllStringSubmatch(out, -1)
	if m == nil {
		t.Fatalf("no summary in run's output:\n%s", out)
	}
	for _, q := range m {
		r, _ := strconv.ParseUint(q[1], 10, 64)
		x, _ := strconv.ParseUint(q[2], 10, 64)
		rx, tx = rx+r, tx+x
	}
	return rx, tx
}

// TestRunReflectsUDP: a kernel UDP socket on the other end of a veth gets
// its datagrams back from `xdpipe run`'s reflect stage, from the address
// it sent them to, with their payload, and the kernel accepts them:
// datagrams a local socket sends over a veth carry only the pseudo-header's
// checksum, which the stage must complete.
func TestRunReflectsUDP(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	proc := startReflector(t, p, "")
	var conn *net.UDPConn
	p.A.NS.MustDo(t, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: p.A.IP})
		return err
	})
	defer conn.Close()
	to := &net.UDPAddr{IP: p.B.IP, Port: reflectPort}
	const n = 100
	buf := make([]byte, 2048)
	for i := range n {
		msg := []byte(fmt.Sprintf("ping %d %s", i, strings.Repeat("x", i)))
		if _, err := conn.WriteToUDP(msg, to); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second)) // a hung test's bound, not a timing gate
		k, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: no reply (%v): a reply with a bad checksum is dropped by the kernel\n%s", i, err, proc.output())
		}
		if want := netip.AddrPortFrom(netip.MustParseAddr(p.B.IP.String()), reflectPort); from != want {
			t.Fatalf("datagram %d: reply from %v, want %v", i, from, want)
		}
		if !bytes.Equal(buf[:k], msg) {
			t.Fatalf("datagram %d: reply %q, want %q", i, buf[:k], msg)
		}
	}
	out, code := proc.stop(t, syscall.SIGINT)
	if code != 0 {
		t.Fatalf("run exited %d:\n%s", code, out)
	}
	if rx, tx := runTotals(t, out); rx != n || tx != n {
		t.Errorf("run received %d and transmitted %d, want %d each (only the reflected port is steered):\n%s", rx, tx, n, out)
	}
}

// sockperfRE matches sockperf's summary of a run.
var sockperfRE = regexp.MustCompile(`SentMessages=(\d+); ReceivedMessages=(\d+)`)

// TestSockperfPingPongAgainstRun: sockperf's ping-pong client, pointed at
// `xdpipe run` reflecting with sockperf: true, gets every reply and
// reports its latency.
func TestSockperfPingPongAgainstRun(t *testing.T) {
	testutil.RequireTool(t, "sockperf")
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	proc := startReflector(t, p, "{sockperf: true}")
	out := p.A.NS.MustRun(t, "sockperf", "ping-pong", "-i", p.B.IP.String(), "-p", strconv.Itoa(reflectPort),
		"-m", "64", "--mps", "1000", "-t", "1")
	m := sockperfRE.FindAllStringSubmatch(out, -1)
	if m == nil {
		t.Fatalf("no sockperf summary:\n%s", out)
	}
	last := m[len(m)-1]
	sent, _ := strconv.Atoi(last[1])
	got, _ := strconv.Atoi(last[2])
	if sent < 500 || got != sent {
		t.Fatalf("sockperf sent %d and got %d replies, want every reply of at least 500:\n%s", sent, got, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "percentile 50.000") || strings.Contains(l, "percentile 99.000") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if _, code := proc.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("run exited %d:\n%s", code, proc.output())
	}
}
