//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// TestStaleRecordRemovesNothingOfOthers: a dead owner's record naming a
// pin directory that is not xdpipe's (files, not on a bpffs) removes
// nothing there: the next claim proceeds, and the files stay.
func TestStaleRecordRemovesNothingOfOthers(t *testing.T) {
	testutil.RequireRoot(t)
	dir := claimDir(t)
	a, err := ClaimInterface(7, ClaimOptions{Name: "veth0", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	a.f.Close() // kill -9
	foreign := t.TempDir()
	important := filepath.Join(foreign, "important.txt")
	if err := os.WriteFile(important, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.path, []byte(`{"pid":999999,"iface":"eth0","pin":"`+foreign+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := ClaimInterface(7, ClaimOptions{Name: "veth0", Dir: dir})
	if err != nil {
		t.Fatalf("claim after a record naming a foreign directory: %v", err)
	}
	defer b.Release()
	if _, err := os.Stat(important); err != nil {
		t.Fatalf("a file the stale record named is gone: %v (stale: %q)", err, b.Stale)
	}
}

// TestStateDirsAreChecked: the owner directory and the state directory
// above it must be root's and writable by no one else, or another user
// could replace the records (rename owners/ under a running instance, or
// make owners/ first). Refused in one line naming the directory, what is
// wrong and what to do.
func TestStateDirsAreChecked(t *testing.T) {
	testutil.RequireRoot(t)
	for _, c := range []struct {
		name                string
		stateMode, ownsMode os.FileMode
		ownsUID             int
		bad                 string // the directory refused, "" for none
		want                string
	}{
		{"private", 0o755, 0o700, 0, "", ""},
		{"state world-writable", 0o777, 0o700, 0, "state", "mode 0777"},
		{"state sticky", 0o1777, 0o700, 0, "state", "mode 1777"},
		{"state group-writable", 0o775, 0o700, 0, "state", "mode 0775"},
		{"owners of another user", 0o755, 0o700, 65534, "owners", "owned by uid 65534"},
		{"owners world-writable", 0o755, 0o777, 0, "owners", "mode 0777"},
	} {
		t.Run(c.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			owners := filepath.Join(state, "owners")
			for _, d := range []struct {
				path string
				mode os.FileMode
				uid  int
			}{{state, c.stateMode, 0}, {owners, c.ownsMode, c.ownsUID}} {
				if err := os.Mkdir(d.path, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(d.path, d.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(d.path, d.uid, d.uid); err != nil {
					t.Fatal(err)
				}
			}
			cl, err := ClaimInterface(7, ClaimOptions{Name: "veth0", Dir: owners})
			if c.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				cl.Release()
				return
			}
			if err == nil {
				cl.Release()
				t.Fatalf("claim accepted")
			}
			bad := map[string]string{"state": state, "owners": owners}[c.bad]
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, bad+" ") || !strings.Contains(msg, c.want) ||
				strings.Contains(msg, "pin") || !strings.Contains(msg, "; ") {
				t.Fatalf("want one line naming %s, %q and what to do, got: %v", bad, c.want, err)
			}
		})
	}
}

// pinnedAttach makes what `rules attach` leaves in namespace ns: the
// steering program attached to ifindex with its link and maps pinned
// under pin, its owner record pinned.
func pinnedAttach(t *testing.T, ns *testutil.NetNS, dir, pin string, ifindex int) {
	t.Helper()
	ns.MustDo(t, func() error {
		c, err := ClaimInterface(ifindex, ClaimOptions{Name: "xdpr", PinPath: pin, Dir: dir, Replace: true})
		if err != nil {
			return err
		}
		defer c.Release()
		s, err := LoadSteer(SteerOptions{PinPath: pin})
		if err != nil {
			return err
		}
		defer s.Close()
		if _, err := s.Attach(ifindex, AttachGeneric); err != nil {
			return err
		}
		return c.SetPinned(true)
	})
}

// TestPinnedProgramGoneIsNoOwner: an owner record of a pinned steering
// program whose interface is gone does not keep a new interface from
// being claimed, even when the new one has the same index in a namespace
// with the same inode number (the kernel reuses both): no program is
// attached to it, whatever the record says.
func TestPinnedProgramGoneIsNoOwner(t *testing.T) {
	testutil.RequireRoot(t)
	const ifindex = 4242
	veth := func(t *testing.T, ns *testutil.NetNS) {
		ns.Batch(t, fmt.Sprintf("link add xdpr index %d type veth peer name xdpr1", ifindex), "link set xdpr up", "link set xdpr1 up")
	}
	claimNew := func(t *testing.T, ns *testutil.NetNS, dir, pin string) {
		t.Helper()
		ns.MustDo(t, func() error {
			c, err := ClaimInterface(ifindex, ClaimOptions{Name: "xdpr", PinPath: pin, Dir: dir})
			if err != nil {
				return fmt.Errorf("claim of an interface no program is attached to: %w", err)
			}
			return c.Release()
		})
	}
	t.Run("interface recreated", func(t *testing.T) {
		dir, pin := claimDir(t), bpffs(t)+"/xdpr"
		ns := testutil.NewNetNS(t)
		veth(t, ns)
		pinnedAttach(t, ns, dir, pin, ifindex)
		ns.Batch(t, "link del xdpr")
		veth(t, ns)
		claimNew(t, ns, dir, pin)
	})
	t.Run("namespace inode reused", func(t *testing.T) {
		dir, pin := claimDir(t), bpffs(t)+"/xdpr"
		old := &testutil.NetNS{Name: fmt.Sprintf("xdpt%dold", os.Getpid()%100000)}
		testutil.MustRun(t, "ip", "netns", "add", old.Name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", old.Name).Run() })
		veth(t, old)
		pinnedAttach(t, old, dir, pin, ifindex)
		ino := nsInode(t, old.Name)
		testutil.MustRun(t, "ip", "netns", "del", old.Name)
		// The kernel frees a namespace's inode number a moment after its
		// last reference goes, and gives the lowest free one to the next.
		name := fmt.Sprintf("xdpt%dnew", os.Getpid()%100000)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		testutil.EventuallyErr(t, 10*time.Second, func() error {
			testutil.MustRun(t, "ip", "netns", "add", name)
			if got := nsInode(t, name); got != ino {
				testutil.MustRun(t, "ip", "netns", "del", name)
				return fmt.Errorf("new namespace inode %d, the old one's was %d", got, ino)
			}
			return nil
		})
		ns := &testutil.NetNS{Name: name}
		veth(t, ns)
		claimNew(t, ns, dir, pin)
	})
}

// nsInode is the inode number of named network namespace.
func nsInode(t *testing.T, name string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
