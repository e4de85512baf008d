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
	dir, base := claimDir(t), bpffs(t)
	a, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinDir: base, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Release() })
	pin := a.PinPath()
	if id, _ := LocalIface(7); pin != PinPathFor(base, id) {
		t.Fatalf("pin path %s, want %s", pin, PinPathFor(base, id))
	}
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
		_, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinDir: base, Dir: dir, Replace: replace})
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
	dir, base := claimDir(t), bpffs(t)
	a, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinDir: base, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSteer(SteerOptions{PinPath: a.PinPath(), MapsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()   // the pins stay
	a.f.Close() // what the kernel does at kill -9
	b, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinDir: base, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if !strings.Contains(b.Stale, "removed its pins") {
		t.Errorf("stale owner not reported: %q", b.Stale)
	}
	if _, err := os.Stat(a.PinPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dead owner's pins are still there: %v", err)
	}
}

// vethWithIndex makes a veth pair in ns whose first end, xdpr, has index
// ifindex, both ends up.
func vethWithIndex(t *testing.T, ns *testutil.NetNS, ifindex int) {
	t.Helper()
	ns.Batch(t, fmt.Sprintf("link add xdpr index %d type veth peer name xdpr1", ifindex), "link set xdpr up", "link set xdpr1 up")
}

// pinnedAttach makes in namespace ns what `rules attach` leaves: the
// steering program attached to ifindex, its link and maps pinned under
// base, its owner record pinned. It returns the interface's ID and the
// pin directory.
func pinnedAttach(t *testing.T, ns *testutil.NetNS, dir, base string, ifindex int) (id IfaceID, pin string) {
	t.Helper()
	ns.MustDo(t, func() error {
		c, err := ClaimInterface(ifindex, ClaimOptions{Name: "xdpr", PinDir: base, Dir: dir, Replace: true})
		if err != nil {
			return err
		}
		defer c.Release()
		pin = c.PinPath()
		s, err := LoadSteer(SteerOptions{PinPath: pin})
		if err != nil {
			return err
		}
		defer s.Close()
		if _, err := s.Attach(ifindex, AttachGeneric); err != nil {
			return err
		}
		id, err = LocalIface(ifindex)
		if err != nil {
			return err
		}
		return c.SetPinned(true)
	})
	return id, pin
}

// TestPinnedAttachmentStaysOwner: a pinned steering program (rules attach)
// owns its interface after its process ended: a run is refused, a claim
// with Replace (rules attach again, rules detach) is not.
func TestPinnedAttachmentStaysOwner(t *testing.T) {
	testutil.RequireRoot(t)
	const ifindex = 4243
	dir, base := claimDir(t), bpffs(t)
	ns := testutil.NewNetNS(t)
	vethWithIndex(t, ns, ifindex)
	_, pin := pinnedAttach(t, ns, dir, base, ifindex)
	t.Cleanup(func() { RemovePins(pin) })
	claim := func(replace bool) (*Claim, error) {
		var c *Claim
		err := ns.Do(func() (err error) {
			c, err = ClaimInterface(ifindex, ClaimOptions{Name: "xdpr", PinDir: base, Dir: dir, Replace: replace})
			return err
		})
		return c, err
	}
	var pe *PinnedError
	if _, err := claim(false); !errors.Is(err, ErrInterfaceOwned) || !errors.As(err, &pe) || pe.Pin != pin ||
		strings.Contains(err.Error(), "xdpipe rules") {
		t.Fatalf("run over a pinned program: %v", err)
	}
	if !pinsPresent(pin) {
		t.Fatal("a refused claim removed the pinned program's pins")
	}
	b, err := claim(true)
	if err != nil {
		t.Fatal(err)
	}
	if !pinsPresent(pin) || b.Stale != "" {
		t.Fatalf("replace removed the pins it is to take over (stale %q)", b.Stale)
	}
	b.Release() // a replace that failed: the pinned program still owns
	if _, err := claim(false); !errors.Is(err, ErrInterfaceOwned) {
		t.Fatalf("run after a failed replace: %v", err)
	}
	c, err := ClaimPinned(pin, ClaimOptions{Dir: dir, Replace: true}) // rules detach --pin
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
	d, err := claim(false)
	if err != nil || d.Stale != "" {
		t.Fatalf("claim after detach: %v (stale %q)", err, d.Stale)
	}
	d.Release()
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
	if !strings.Contains(b.Stale, "left what its record names ("+foreign+")") {
		t.Errorf("the stale record's foreign directory not reported: %q", b.Stale)
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
		stateMode, ownsMode uint32
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
				mode uint32
				uid  int
			}{{state, c.stateMode, 0}, {owners, c.ownsMode, c.ownsUID}} {
				if err := os.Mkdir(d.path, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := unix.Chmod(d.path, d.mode); err != nil { // the sticky bit as the kernel spells it
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
			if ents, _ := os.ReadDir(owners); len(ents) != 0 {
				t.Fatalf("a refused claim left %v", ents)
			}
		})
	}
}

// TestPinnedProgramGoneIsNoOwner: an owner record of a pinned steering
// program whose interface is gone does not keep a new interface from
// being claimed, even when the new one has the same index in a namespace
// with the same inode number (the kernel reuses both): no program is
// attached to it, whatever the record says. The namespace's ID is not its
// inode number.
func TestPinnedProgramGoneIsNoOwner(t *testing.T) {
	testutil.RequireRoot(t)
	const ifindex = 4242
	claimNew := func(t *testing.T, ns *testutil.NetNS, dir, base string) (id IfaceID, stale string) {
		t.Helper()
		ns.MustDo(t, func() error {
			c, err := ClaimInterface(ifindex, ClaimOptions{Name: "xdpr", PinDir: base, Dir: dir})
			if err != nil {
				return fmt.Errorf("claim of an interface no program is attached to: %w", err)
			}
			id, stale = IfaceID{}, c.Stale
			if id, err = LocalIface(ifindex); err != nil {
				return err
			}
			return c.Release()
		})
		return id, stale
	}
	t.Run("interface recreated", func(t *testing.T) {
		dir, base := claimDir(t), bpffs(t)
		ns := testutil.NewNetNS(t)
		vethWithIndex(t, ns, ifindex)
		_, pin := pinnedAttach(t, ns, dir, base, ifindex)
		ns.Batch(t, "link del xdpr")
		vethWithIndex(t, ns, ifindex)
		_, stale := claimNew(t, ns, dir, base)
		if !strings.Contains(stale, "no longer attached") || !strings.Contains(stale, "removed its pins") {
			t.Errorf("the gone program's cleanup not reported: %q", stale)
		}
		if pinsPresent(pin) {
			t.Error("the gone program's pins are still there")
		}
	})
	t.Run("namespace inode reused", func(t *testing.T) {
		dir, base := claimDir(t), bpffs(t)
		old := &testutil.NetNS{Name: fmt.Sprintf("xdpt%dold", os.Getpid()%100000)}
		testutil.MustRun(t, "ip", "netns", "add", old.Name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", old.Name).Run() })
		vethWithIndex(t, old, ifindex)
		oldID, _ := pinnedAttach(t, old, dir, base, ifindex)
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
		vethWithIndex(t, ns, ifindex)
		if id, _ := claimNew(t, ns, dir, base); id == oldID {
			t.Errorf("the new namespace's interface has the old one's ID %v", id)
		}
	})
}

// TestEarlierLayoutIsNotReused: what an xdpipe of the layouts before
// IfaceID left is neither taken over nor removed: maps pinned under the
// interface's name refuse the claim in one line saying what to remove, and
// a running instance's owner file (named by the namespace's inode) refuses
// it naming the pid.
func TestEarlierLayoutIsNotReused(t *testing.T) {
	testutil.RequireRoot(t)
	dir, base := claimDir(t), bpffs(t)
	old := filepath.Join(base, "veth0")
	s, err := LoadSteer(SteerOptions{PinPath: old, MapsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = ClaimInterface(7, ClaimOptions{Name: "veth0", PinDir: base, Dir: dir})
	if !errors.Is(err, ErrInterfaceOwned) || !strings.Contains(err.Error(), "earlier xdpipe version pinned maps under "+old) ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("claim with maps pinned under the name: %v", err)
	}
	if !pinsPresent(old) {
		t.Fatal("the earlier layout's pins were removed")
	}
	if err := RemovePins(old); err != nil {
		t.Fatal(err)
	}

	var ns unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &ns); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("net%d-if7.owner", ns.Ino)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(`{"pid":4242,"iface":"veth0"}`); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinDir: base, Dir: dir}); !errors.Is(err, ErrInterfaceOwned) ||
		!strings.Contains(err.Error(), "pid 4242 (an earlier version)") {
		t.Fatalf("claim with an earlier version's owner file locked: %v", err)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	c, err := ClaimInterface(7, ClaimOptions{Name: "veth0", PinDir: base, Dir: dir})
	if err != nil {
		t.Fatalf("claim once the earlier version ended: %v", err)
	}
	c.Release()
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

func mustRules(t *testing.T, y string) *rules.Set {
	t.Helper()
	set, _, err := rules.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return set
}
