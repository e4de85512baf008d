//go:build linux

package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rules"
)

// claimDir is a private owner directory for a test.
func claimDir(t *testing.T) string { return filepath.Join(t.TempDir(), "owners") }

// TestInterfaceHasOneOwner: while an instance holds an interface, a second
// claim (another run, a rules attach) is refused and touches nothing of
// the first one's: its pins and rules stay. Released, it can be claimed.
func TestInterfaceHasOneOwner(t *testing.T) {
	testutil.RequireRoot(t)
	dir, pin := claimDir(t), bpffs(t)+"/veth0"
	a, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinPath: pin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Release() })
	s, err := LoadSteer(SteerOptions{PinPath: pin, MapsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Unpin(); s.Close() })
	set := mustRules(t, "rules:\n  - {priority: 10, name: web, proto: tcp, dport: 80, action: redirect}\n")
	if err := s.Apply(set); err != nil {
		t.Fatal(err)
	}
	for _, replace := range []bool{false, true} {
		_, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinPath: pin, Dir: dir, Replace: replace})
		if !errors.Is(err, ErrInterfaceOwned) || !strings.Contains(err.Error(), "pid") {
			t.Fatalf("second claim (replace %v): %v", replace, err)
		}
	}
	if !pinsPresent(pin) {
		t.Fatal("the refused claim removed the owner's pins")
	}
	if got, err := s.Rules(); err != nil || len(got.Rules) != 1 {
		t.Fatalf("owner's rules after a refused claim: %v %v", got, err)
	}
	other, err := ClaimInterface(8, ClaimOptions{Name: "veth1", Dir: dir})
	if err != nil {
		t.Fatalf("another interface: %v", err)
	}
	other.Release()
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	b, err := ClaimInterface(7, ClaimOptions{Name: "veth0", Dir: dir})
	if err != nil || b.Stale != "" {
		t.Fatalf("claim after release: %v (stale %q)", err, b.Stale)
	}
	b.Release()
}

// TestDeadOwnerIsCleanedUp: an owner that ended without cleaning up (kill
// -9: its lock went with it, its record and pins stayed) is found stale by
// the next claim, which removes the pins it left.
func TestDeadOwnerIsCleanedUp(t *testing.T) {
	testutil.RequireRoot(t)
	dir, pin := claimDir(t), bpffs(t)+"/veth0"
	a, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinPath: pin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSteer(SteerOptions{PinPath: pin, MapsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()   // the pins stay
	a.f.Close() // what the kernel does at kill -9
	b, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinPath: pin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if !strings.Contains(b.Stale, "removed its pins") {
		t.Errorf("stale owner not reported: %q", b.Stale)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dead owner's pins are still there: %v", err)
	}
}

// TestPinnedAttachmentStaysOwner: a pinned steering program (rules attach)
// owns its interface after its process ended: a run is refused, a claim
// with Replace (rules attach again, rules detach) is not.
func TestPinnedAttachmentStaysOwner(t *testing.T) {
	testutil.RequireRoot(t)
	dir, pin := claimDir(t), bpffs(t)+"/veth0"
	a, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinPath: pin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSteer(SteerOptions{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	t.Cleanup(func() { RemovePins(pin) })
	if err := a.SetPinned(true); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := ClaimInterface(7, ClaimOptions{Name: "veth0", Dir: dir}); !errors.Is(err, ErrInterfaceOwned) ||
		!strings.Contains(err.Error(), "rules detach") {
		t.Fatalf("run over a pinned program: %v", err)
	}
	if !pinsPresent(pin) {
		t.Fatal("a refused claim removed the pinned program's pins")
	}
	b, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinPath: pin, Dir: dir, Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if !pinsPresent(pin) || b.Stale != "" {
		t.Fatalf("replace removed the pins it is to take over (stale %q)", b.Stale)
	}
	b.Release() // a replace that failed: the pinned program still owns
	if _, err := ClaimInterface(7, ClaimOptions{Name: "veth0", Dir: dir}); !errors.Is(err, ErrInterfaceOwned) {
		t.Fatalf("run after a failed replace: %v", err)
	}
	c, err := ClaimPinned(pin, ClaimOptions{PinPath: pin, Dir: dir, Replace: true}) // rules detach --pin
	if err != nil || c == nil {
		t.Fatalf("claim by pin: %v %v", c, err)
	}
	if err := RemovePins(pin); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPinned(false); err != nil {
		t.Fatal(err)
	}
	c.Release()
	d, err := ClaimInterface(7, ClaimOptions{Name: "veth0", Dir: dir})
	if err != nil || d.Stale != "" {
		t.Fatalf("claim after detach: %v (stale %q)", err, d.Stale)
	}
	d.Release()
}

func mustRules(t *testing.T, y string) *rules.Set {
	t.Helper()
	set, _, err := rules.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return set
}
