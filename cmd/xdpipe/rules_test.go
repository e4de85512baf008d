package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rdma"
)

// bpffsDir mounts a private bpffs for the test's pins. `ip netns exec`
// remounts /sys, hiding /sys/fs/bpf, but keeps other mounts visible.
func bpffsDir(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	testutil.MustRun(t, "mount", "-t", "bpf", "bpffs", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return filepath.Join(dir, "xdpipe")
}

// pinOf is the pin directory of end e's interface under pinDir.
func pinOf(t *testing.T, e *testutil.LinkEnd, pinDir string) string {
	t.Helper()
	var id bpf.IfaceID
	e.NS.MustDo(t, func() (err error) {
		id, err = bpf.LookupIface(e.Name)
		return err
	})
	return bpf.PinPathFor(pinDir, id)
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRulesCommand drives `xdpipe rules` against a steering program it
// attaches to a veth: no instance, attach with a file, list, add (with a
// clash reported at file:line), traffic counted per rule in stats (and
// the frames a rule redirects with no socket on their queue as unbound),
// del, a bad file leaving the running set alone, detach.
func TestRulesCommand(t *testing.T) {
	testutil.RequireTool(t, "ping")
	pinDir := bpffsDir(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	b := p.B.NS
	at := []string{"--iface", p.B.Name, "--pin-dir", pinDir}

	out, code := xdpipeIn(t, b, append([]string{"rules", "list"}, at...)...)
	if code == 0 || !strings.Contains(out, "no running xdpipe instance") {
		t.Fatalf("rules list without an instance: exit %d:\n%s", code, out)
	}

	initial := writeFile(t, "initial.yaml", `default: pass
malformed: drop
rules:
  - priority: 10
    name: no-ping
    proto: icmp
    action: drop
  - priority: 20
    name: udp-in
    proto: udp
    dport: 9000-9009
    action: pass
  - priority: 25
    name: to-xsk
    proto: udp
    dport: 9100
    action: redirect
`)
	t.Cleanup(func() { xdpipeIn(t, b, append([]string{"rules", "detach"}, at...)...) })
	out, code = xdpipeIn(t, b, append([]string{"rules", "attach", "--file", initial}, at...)...)
	if code != 0 {
		t.Fatalf("attach: exit %d:\n%s", code, out)
	}
	t.Log(strings.TrimSpace(out))
	if !testutil.XDPAttached(b.MustRun(t, "ip", "link", "show", "dev", p.B.Name)) {
		t.Fatal("no XDP program on the interface after rules attach exited")
	}

	more := writeFile(t, "more.yaml", `rules:
  - priority: 30
    name: tcp-drop
    proto: tcp
    action: drop
  - priority: 10
    proto: udp
    action: drop
`)
	out, code = xdpipeIn(t, b, append([]string{"rules", "add", more}, at...)...)
	if code == 0 || !strings.Contains(out, more+":6: priority 10 is already used") {
		t.Fatalf("add with a clashing priority: exit %d:\n%s", code, out)
	}
	bad := writeFile(t, "bad.yaml", "rules:\n  - priority: 40\n    dst: 198.18.0.0/40\n    action: drop\n")
	out, code = xdpipeIn(t, b, append([]string{"rules", "replace", bad}, at...)...)
	if code == 0 || !strings.Contains(out, bad+":3: dst: invalid prefix") {
		t.Fatalf("replace with a bad prefix: exit %d:\n%s", code, out)
	}
	ok := writeFile(t, "ok.yaml", "rules:\n  - priority: 30\n    name: tcp-drop\n    proto: tcp\n    action: drop\n")
	if out, code = xdpipeIn(t, b, append([]string{"rules", "add", ok}, at...)...); code != 0 {
		t.Fatalf("add: exit %d:\n%s", code, out)
	}

	// Traffic: 5 pings (dropped by rule 10), 7 UDP datagrams to 9001
	// (passed by rule 20, and received by the kernel stack), 3 to 9100
	// (redirected by rule 25, but with no socket registered they reach the
	// kernel stack too, counted unbound).
	p.A.NS.Run("ping", "-c5", "-i0.01", "-W0.2", p.B.IP.String())
	// Each port: datagrams sent from A, then read on B's kernel socket.
	for _, c := range []struct {
		port, n int
		what    string
	}{{9001, 7, "passed by the rule"}, {9100, 3, "redirected to no socket"}} {
		var rx net.PacketConn
		b.MustDo(t, func() (err error) {
			rx, err = net.ListenPacket("udp4", net.JoinHostPort(p.B.IP.String(), strconv.Itoa(c.port)))
			return err
		})
		defer rx.Close()
		p.A.NS.MustDo(t, func() error {
			tx, err := net.Dial("udp4", net.JoinHostPort(p.B.IP.String(), strconv.Itoa(c.port)))
			if err != nil {
				return err
			}
			defer tx.Close()
			for i := range c.n {
				if _, err := fmt.Fprintf(tx, "datagram%d", i); err != nil {
					return err
				}
			}
			return nil
		})
		buf := make([]byte, 100)
		for i := range c.n {
			rx.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := rx.ReadFrom(buf); err != nil {
				t.Fatalf("datagram %d to port %d, %s, did not reach the kernel's UDP socket: %v", i, c.port, c.what, err)
			}
		}
	}

	out, code = xdpipeIn(t, b, append([]string{"rules", "stats", "--json"}, at...)...)
	if code != 0 {
		t.Fatalf("stats: exit %d:\n%s", code, out)
	}
	var st struct {
		Default string `json:"default"`
		Rules   []struct {
			Priority uint32 `json:"priority"`
			Name     string `json:"name"`
			Packets  uint64 `json:"packets"`
		} `json:"rules"`
		Misses *struct {
			Packets uint64 `json:"packets"`
		} `json:"flow_cache_misses"`
		Unbound []struct {
			Queue   int    `json:"queue"`
			Packets uint64 `json:"packets"`
		} `json:"unbound_queues"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, out)
	}
	got := map[string]uint64{}
	for _, r := range st.Rules {
		got[r.Name] = r.Packets
	}
	if len(st.Rules) != 4 || got["no-ping"] != 5 || got["udp-in"] != 7 || got["to-xsk"] != 3 || got["tcp-drop"] != 0 {
		t.Fatalf("stats: %+v\n%s", st, out)
	}
	if len(st.Unbound) != 1 || st.Unbound[0].Queue != 0 || st.Unbound[0].Packets != 3 {
		t.Fatalf("stats: unbound queues %+v, want the 3 redirected datagrams on queue 0\n%s", st.Unbound, out)
	}
	// The pings and the datagrams are two flows at least: each missed the
	// flow cache once at least.
	if st.Misses == nil || st.Misses.Packets < 2 {
		t.Fatalf("stats: flow cache misses %+v, want at least 2\n%s", st.Misses, out)
	}
	out, _ = xdpipeIn(t, b, append([]string{"rules", "stats"}, at...)...)
	t.Logf("rules stats:\n%s", out)
	if !strings.Contains(out, "unbound queues: q0=3 ") {
		t.Fatalf("rules stats does not show the unbound frames:\n%s", out)
	}

	if out, code = xdpipeIn(t, b, append([]string{"rules", "del", "no-ping", "30"}, at...)...); code != 0 {
		t.Fatalf("del: exit %d:\n%s", code, out)
	}
	out, code = xdpipeIn(t, b, append([]string{"rules", "list"}, at...)...)
	if code != 0 || strings.Contains(out, "no-ping") || strings.Contains(out, "tcp-drop") || !strings.Contains(out, "udp-in") {
		t.Fatalf("list after del: exit %d:\n%s", code, out)
	}
	if out := p.A.NS.MustRun(t, "ping", "-c1", "-W2", p.B.IP.String()); !strings.Contains(out, "1 received") {
		t.Fatalf("ping after deleting the drop rule:\n%s", out)
	}

	if out, code = xdpipeIn(t, b, append([]string{"rules", "detach"}, at...)...); code != 0 {
		t.Fatalf("detach: exit %d:\n%s", code, out)
	}
	noXDP(t, &p.B)
}

// TestRulesAttachMountsBPFFS: `ip netns exec` gives the command a fresh
// /sys without bpffs on /sys/fs/bpf, so attach has to mount one to pin.
// (That mount lives in ip's private mount namespace, so this touches no
// real instance's pins.)
func TestRulesAttachMountsBPFFS(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	if out := p.B.NS.MustRun(t, "stat", "-f", "-c", "%T", "/sys/fs/bpf"); strings.TrimSpace(out) == "bpf_fs" {
		t.Skip("ip netns exec kept a bpffs on /sys/fs/bpf; nothing to mount")
	}
	out, code := xdpipeIn(t, p.B.NS, "rules", "attach", "--iface", p.B.Name, "--pin-dir", "/sys/fs/bpf/xdpipe-mount-test")
	if code != 0 || !strings.Contains(out, "attached to "+p.B.Name) {
		t.Fatalf("attach with no bpffs mounted: exit %d:\n%s", code, out)
	}
}

// TestResolvePin: without --pin, --iface names its interface's directory
// under base, found by the name in this network namespace; otherwise the
// only directory of an interface of this namespace is used (another
// namespace's are not), and none or several are clear errors.
func TestResolvePin(t *testing.T) {
	base := t.TempDir()
	if _, err := resolvePin("", base); err == nil || !strings.Contains(err.Error(), "no running xdpipe instance") {
		t.Fatalf("no instance: %v", err)
	}
	lo, err := bpf.LookupIface("lo")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := resolvePin("lo", base); err != nil || got != filepath.Join(base, lo.String()) {
		t.Fatalf("--iface lo: %q, %v", got, err)
	}
	if _, err := resolvePin("no-such-if", base); err == nil || !strings.Contains(err.Error(), `interface "no-such-if" not found`) {
		t.Fatalf("--iface of no interface: %v", err)
	}
	pinned := func(id bpf.IfaceID) {
		d := filepath.Join(base, id.String())
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "steer_active"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pinned(bpf.IfaceID{Netns: "ns999999999", Ifindex: lo.Ifindex}) // another namespace's
	if _, err := resolvePin("", base); err == nil || !strings.Contains(err.Error(), "no running xdpipe instance") {
		t.Fatalf("only another namespace's instance: %v", err)
	}
	pinned(lo)
	if got, err := resolvePin("", base); err != nil || got != filepath.Join(base, lo.String()) {
		t.Fatalf("one instance: %q, %v", got, err)
	}
	other := bpf.IfaceID{Netns: lo.Netns, Ifindex: 99999}
	pinned(other)
	if _, err := resolvePin("", base); err == nil || !strings.Contains(err.Error(), "lo, "+other.String()) {
		t.Fatalf("two instances: %v", err)
	}
}

// TestExplainNamesTheFix: the libraries' errors say what is wrong without
// naming a command or a flag; explain adds the one that fixes it, through
// any wrapping, and leaves other errors as they are.
func TestExplainNamesTheFix(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("steering rules: %w", &bpf.PinnedError{Name: "eth0", Pin: "/sys/fs/bpf/x"}), "; remove it with `xdpipe rules detach --pin /sys/fs/bpf/x`"},
		{fmt.Errorf("steering rules: %w", fmt.Errorf("%w: pins removed", bpf.ErrPinsGone)), ": restart xdpipe to pin them again and change them"},
		{fmt.Errorf("load steer: %w", fmt.Errorf("%w: /sys/fs/bpf/x has mode -rwxrwxrwx; chmod go-w it", bpf.ErrPinDirUnsafe)), ", or choose another --pin-dir"},
		{fmt.Errorf("rdma stage: %w", fmt.Errorf("%w: %w", rdma.ErrRefused, rdma.ErrBufferSize)), ": raise the sink's buffer size (xdpipe rdma-sink --buffer-size)"},
	} {
		got := explain(c.err)
		if got.Error() != c.err.Error()+c.want || !errors.Is(got, c.err) {
			t.Errorf("explain(%q) = %q, want the error followed by %q", c.err, got, c.want)
		}
	}
	other := fmt.Errorf("queue 3: %w", os.ErrNotExist)
	if got := explain(other); got != other {
		t.Errorf("explain(%q) = %q, want it unchanged", other, got)
	}
}
