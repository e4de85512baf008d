package main

import (
	"encoding/binary"
	"fmt"
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

// Tests of what NIC-attached hosts meet: RSS over several queues, a daemon
// killed with SIGKILL, a jumbo MTU with zero-copy. They run on veth here and
// on the VM stage's zero-copy virtio-net NICs (internal/vmtest).

// TestRunRSS: with 4 queues on each end, then 2 (ethtool -L between the
// runs), `queues: all` runs one worker per active queue; 64 flows spread
// over the queues, and every frame comes back exactly once or is counted
// where it went: the per-queue counters add up to the total, and frames
// on RX queues without a socket are counted unbound (metrics) with one
// warning naming the queues. On veth there are none. In the VM with 2 of
// its 4 channels there are: virtio_net takes the other two queue pairs
// for XDP_TX when the program attaches, and the host's multi-queue tap
// still hashes flows onto them.
func TestRunRSS(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{Queues: 4})
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(testRules), 0o644)
	// A filter stage keeps the namespaces' IPv6 chatter out of the counts.
	cfg := filepath.Join(dir, "run.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("interfaces: [%s]\nqueues: all\nstages:\n  - filter: {rules: %s}\n  - count\n  - macswap\n",
		p.B.Name, rulesFile)), 0o644)
	for _, queues := range []int{4, 2} {
		t.Run(fmt.Sprintf("queues=%d", queues), func(t *testing.T) {
			vmq, _ := strconv.Atoi(os.Getenv("XDPIPE_VM_QUEUES"))
			xdpAddsQueues := p.Kind == testutil.NIC && vmq > queues
			p.SetQueues(t, queues)
			addr := freePort(t, p.B.NS)
			back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
			proc := startRun(t, p.B.NS, "--config", cfg, "--poll", "wakeup", "--ring", "512", "--metrics", addr,
				"--interval", "0s", "--bind", testutil.Bind())
			if out := proc.output(); !strings.Contains(out, fmt.Sprintf("ready: %d queues", queues)) {
				t.Fatalf("want one worker per queue, %d:\n%s", queues, out)
			}
			// Done: back, or counted unbound (a scrape at most every 20 ms).
			var unbound int64
			var scraped time.Time
			done := func() int64 {
				if time.Since(scraped) > 20*time.Millisecond {
					unbound, scraped = int64(unboundFrames(scrape(t, p.B.NS, addr))), time.Now()
				}
				return back.Received() + unbound
			}
			n := testutil.Frames(4000)
			sendFlows(t, back, p, 0, n, 128, 64, done)
			testutil.EventuallyErr(t, 10*time.Second, func() error {
				if done() < int64(n) {
					return fmt.Errorf("%d frames back and %d counted unbound, of %d sent", back.Received(), unbound, n)
				}
				return nil
			})
			seen := make([]bool, n)
			for _, f := range back.Frames() {
				seq := binary.BigEndian.Uint32(f[42:46])
				if int(seq) >= n || seen[seq] {
					t.Fatalf("frame %d unknown or twice", seq)
				}
				seen[seq] = true
			}
			body := scrape(t, p.B.NS, addr)
			var rx, tx []float64
			var sumRX, sumTX, filtered float64
			used := 0
			for q := range queues {
				label := fmt.Sprintf(`queue="%d"`, q)
				rx = append(rx, metric(t, body, "xdpipe_rx_packets_total", label))
				tx = append(tx, metric(t, body, "xdpipe_tx_packets_total", label))
				sumRX, sumTX = sumRX+rx[q], sumTX+tx[q]
				if tx[q] > 0 {
					used++
				}
			}
			filtered = metric(t, body, "xdpipe_drops_total", `reason="verdict"`)
			lost := unboundFrames(body)
			t.Logf("%d frames of 64 flows over %d queues: rx %v, tx %v, %v others filtered, %v on queues without a socket", n, queues, rx, tx, filtered, lost)
			if sumTX+lost != float64(n) || sumRX != sumTX+filtered {
				t.Errorf("per-queue counters add up to rx %v, tx %v, filtered %v, unbound %v; sent %d", sumRX, sumTX, filtered, lost, n)
			}
			if used < 2 {
				t.Errorf("64 flows all on one queue of %d: tx %v", queues, tx)
			}
			switch {
			case xdpAddsQueues && lost == 0:
				t.Errorf("no frame counted on the queues the XDP program added to %d", queues)
			case !xdpAddsQueues && lost != 0:
				t.Errorf("%v frames on queues without a socket, with a socket on every queue", lost)
			}
			warning := "reach no AF_XDP socket and go to the kernel stack"
			if lost > 0 { // the daemon looks once a second
				testutil.EventuallyErr(t, 10*time.Second, func() error {
					if out := proc.output(); !strings.Contains(out, warning) {
						return fmt.Errorf("%v frames on queues without a socket and no warning:\n%s", lost, out)
					}
					return nil
				})
			}
			out, code := proc.stop(t, syscall.SIGTERM)
			if code != 0 || strings.Count(out, "frames accounted for") != queues {
				t.Fatalf("exit %d, want every queue's frames accounted for:\n%s", code, out)
			}
			if (lost > 0) != strings.Contains(out, warning) {
				t.Errorf("%v frames on queues without a socket; the warning %q is missing or false:\n%s", lost, warning, out)
			}
			if lost > 0 {
				t.Logf("the warning and the summary:\n%s", grepLines(out, "no AF_XDP socket", "without a socket"))
			}
		})
	}
}

// unboundFrames sums xdpipe_unbound_frames_total over interfaces and
// queues: 0 when no queue had any (the series appear with the first).
func unboundFrames(body string) float64 {
	var sum float64
	for _, m := range regexp.MustCompile(`(?m)^xdpipe_unbound_frames_total\{[^}]*\} ([0-9.e+-]+)$`).FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

// grepLines returns the lines of out that contain any of subs.
func grepLines(out string, subs ...string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				keep = append(keep, l)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}

// TestRunKill9LeavesNothing: `xdpipe run` killed with SIGKILL under
// traffic leaves no XDP program attached and the queue free: a new run
// binds the same queue in the same mode and forwards every frame. Behind
// the steering program with pinned rule maps, the pins outlive the kill by
// design (the next run takes over their rules and counters;
// bpf.SteerOptions) and the next run's clean stop removes them.
func TestRunKill9LeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	for _, steer := range []bool{false, true} {
		t.Run(map[bool]string{false: "redirect", true: "steer-pinned"}[steer], func(t *testing.T) {
			kill9(t, steer)
		})
	}
}

func kill9(t *testing.T, steer bool) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	args := []string{"--iface", p.B.Name, "--stages", "count,macswap", "--poll", "wakeup", "--metrics", "off",
		"--interval", "0s", "--bind", testutil.Bind()}
	var pin string
	if steer {
		pinDir := t.TempDir()
		testutil.MustRun(t, "mount", "-t", "bpf", "bpffs", pinDir)
		t.Cleanup(func() { testutil.MustRun(t, "umount", pinDir) })
		pin = pinOf(t, &p.B, pinDir)
		rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
		os.WriteFile(rulesFile, []byte(testRules), 0o644)
		args = append(args, "--rules", rulesFile, "--pin-dir", pinDir)
	}
	back := testutil.OpenPacketSocket(t, &p.A, swappedTest(p))
	n := testutil.Frames(2000)

	first := startRun(t, p.B.NS, args...)
	sendFlows(t, back, p, 0, n/2, 128, 1, back.Received)
	if err := first.cmd.Process.Kill(); err != nil { // frames still in flight
		t.Fatal(err)
	}
	select {
	case <-first.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("xdpipe run still there 20 s after SIGKILL")
	}
	noXDP(t, &p.B)
	if _, err := os.Stat(pin); steer && err != nil {
		t.Errorf("the rule maps' pins should outlive a SIGKILL, for the next run to take over: %v", err)
	}
	if steer {
		// The pins steer nothing now: the rules commands say the
		// instance is gone instead of changing them.
		rulesFile := filepath.Join(t.TempDir(), "more.yaml")
		os.WriteFile(rulesFile, []byte("rules:\n  - priority: 50\n    proto: udp\n    dport: 99\n    action: drop\n"), 0o644)
		for _, sub := range [][]string{{"add", rulesFile}, {"list"}} {
			out, code := xdpipeIn(t, p.B.NS, append([]string{"rules", "--pin", pin}, sub...)...)
			if code == 0 || !strings.Contains(out, "the instance that pinned them is gone") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
				t.Errorf("rules %s after the instance was killed: exit %d, want one line saying it is gone:\n%s", sub[0], code, out)
			}
		}
	}

	before := back.Received() // what came back before the kill
	second := startRun(t, p.B.NS, args...)
	sendFlows(t, back, p, n/2, n-n/2, 128, 1, func() int64 { return back.Received() - before + int64(n/2) })
	waitBack(t, back, before+int64(n-n/2))
	out, code := second.stop(t, syscall.SIGTERM)
	if code != 0 || !strings.Contains(out, "frames accounted for") {
		t.Fatalf("second run: exit %d:\n%s", code, out)
	}
	noXDP(t, &p.B)
	if _, err := os.Stat(pin); steer && !os.IsNotExist(err) {
		t.Errorf("pins under %s left after the second run's clean stop (%v)", pin, err)
	}
}

// TestZeroCopyJumbo: on a NIC whose zero-copy takes one buffer a packet
// (virtio-net: xdp-zc-max-segs 1) an MTU of 9000 has a clear outcome, never
// silent loss: --bind zerocopy is refused with one line naming the cause
// and the fix, before anything is attached; --bind auto binds copy mode,
// says why in its start line, and counts every 9000-byte frame.
func TestZeroCopyJumbo(t *testing.T) {
	testutil.RequireZeroCopy(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: 9000})
	for _, cmd := range [][]string{
		{"rxdrop", "--iface", p.B.Name, "--bind", "zerocopy", "--duration", "1s"},
		{"run", "--iface", p.B.Name, "--bind", "zerocopy", "--stages", "count", "--metrics", "off"},
	} {
		out, code := xdpipeIn(t, p.B.NS, cmd...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if last := lines[len(lines)-1]; code == 0 || !strings.Contains(last, "needs multi-buffer") || !strings.Contains(last, "--bind copy") {
			t.Errorf("%s --bind zerocopy at MTU 9000: exit %d, want a refusal naming multi-buffer and --bind copy:\n%s", cmd[0], code, out)
		}
		noXDP(t, &p.B)
	}
	rxdrop := startRxdrop(t, p, "--bind", "auto")
	count := testutil.Frames(500)
	sendJumbo(t, p, rxdrop, count)
	out, code := rxdrop.stop(t, syscall.SIGINT)
	if code != 0 || !strings.Contains(out, "AF_XDP copy mode (auto: ") || !strings.Contains(out, "multi-buffer") {
		t.Fatalf("rxdrop --bind auto at MTU 9000: exit %d, want copy mode and why in the start line:\n%s", code, out)
	}
	if rx, uniq, lost := tracked(t, out); rx != uint64(count) || uniq != uint64(count) || lost != 0 {
		t.Errorf("received %d 9000-byte frames (%d unique, %d lost), want %d:\n%s", rx, uniq, lost, count, out)
	}
}
