package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/frame/frametest"
	"github.com/xdpipe/xdpipe/internal/testutil"
)

func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }

// TestCountsEveryUDPPacketByPort builds the example, runs it on one end
// of a link pair and sends UDP frames to two ports from the other end: it
// counts each one under its port, stops on SIGINT with the same counts,
// and leaves no XDP program behind.
func TestCountsEveryUDPPacketByPort(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "go", "ip")
	bin := filepath.Join(t.TempDir(), "countudp")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example: %v\n%s", err, out)
	}
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	// The example writes to a file; the test reads it as it grows.
	outPath := filepath.Join(t.TempDir(), "out")
	outFile, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	output := func() string {
		b, _ := os.ReadFile(outPath)
		return string(b)
	}
	cmd := exec.Command("ip", "netns", "exec", p.B.NS.Name, bin, "-iface", p.B.Name, "-interval", "100ms")
	cmd.Stdout, cmd.Stderr = outFile, outFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waited := false
	t.Cleanup(func() {
		if !waited {
			cmd.Process.Kill()
			<-exited
		}
	})
	testutil.Eventually(t, time.Minute, func() bool { return strings.Contains(output(), "counting UDP on "+p.B.Name) },
		"the example did not start")

	sock := testutil.OpenPacketSocket(t, &p.A, func([]byte) bool { return false })
	sent := map[uint16]int{5000: 30, 5001: 20}
	for port, n := range sent {
		f := frametest.BuildFrame(frametest.FrameSpec{Src: netip.AddrFrom4([4]byte(p.A.IP)), Dst: netip.AddrFrom4([4]byte(p.B.IP)),
			Proto: syscall.IPPROTO_UDP, Sport: 40000, Dport: port, Payload: 32})
		copy(f[0:6], p.B.MAC)
		copy(f[6:12], p.A.MAC)
		for range n {
			sock.Send(t, f)
		}
	}
	counted := func(s string) bool {
		for port, n := range sent {
			if !strings.Contains(s, fmt.Sprintf("udp dport %d: %d packets\n", port, n)) {
				return false
			}
		}
		return true
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return counted(output()) }, "the example did not count %v", sent)

	before := len(output())
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		waited = true
		if err != nil {
			t.Fatalf("the example: %v\n%s", err, output())
		}
	case <-time.After(30 * time.Second): // a hung test's bound, not a timing gate
		t.Fatalf("the example did not stop on SIGINT:\n%s", output())
	}
	if final := output()[before:]; !counted(final) {
		t.Errorf("the counts at the stop, want %v:\n%s", sent, final)
	}
	if show := p.B.NS.MustRun(t, "ip", "link", "show", "dev", p.B.Name); testutil.XDPAttached(show) {
		t.Errorf("an XDP program is left on %s:\n%s", p.B.Name, show)
	}
}
