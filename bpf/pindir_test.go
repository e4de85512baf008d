//go:build linux

package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// bpffsMounted mounts a private bpffs as the help text says (mode 1777)
// and returns its root.
func bpffsMounted(t *testing.T) string {
	t.Helper()
	return filepath.Dir(bpffs(t))
}

// TestPinDirsArePrivate: the directories a start creates are 0700.
func TestPinDirsArePrivate(t *testing.T) {
	root := bpffsMounted(t)
	pin := filepath.Join(root, "xdpipe", "veth0")
	if err := ensurePinDir(pin); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{pin, filepath.Dir(pin)} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", d, st.Mode().Perm())
		}
	}
}

// TestPinDirOfAnotherUserRefused: a directory on the way to the pins that
// another user owns, or that others may write, is refused: its owner could
// rename or remove the pins.
func TestPinDirOfAnotherUserRefused(t *testing.T) {
	root := bpffsMounted(t)
	for _, c := range []struct {
		name string
		mode os.FileMode
		uid  int
	}{
		{"evil", 0o777, 65534},
		{"theirs", 0o700, 65534},
		{"open", 0o777, 0},
		{"group", 0o770, 0},
	} {
		d := filepath.Join(root, c.name)
		if err := os.Mkdir(d, c.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, c.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		if err := os.Chown(d, c.uid, c.uid); err != nil {
			t.Fatal(err)
		}
		for _, pin := range []string{filepath.Join(d, "veth0"), d} {
			if err := ensurePinDir(pin); !errors.Is(err, ErrPinDirUnsafe) || strings.Contains(err.Error(), "--pin-dir") {
				t.Errorf("%s (mode %v, uid %d): %v, want ErrPinDirUnsafe naming no flag", pin, c.mode, c.uid, err)
			}
		}
		if _, err := os.Stat(filepath.Join(d, "veth0")); err == nil {
			t.Errorf("%s: created a directory in a refused one", d)
		}
	}
}

// TestPinPathOffBPFFSLeavesNothing: a pin path that is not on a bpffs is
// refused before a directory is made.
func TestPinPathOffBPFFSLeavesNothing(t *testing.T) {
	base := t.TempDir()
	if err := ensurePinDir(filepath.Join(base, "xdpipe", "veth0")); err == nil {
		t.Fatal("pin path on tmpfs accepted")
	}
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

// TestUnpinLeavesNoDirectory: a clean stop removes the pins, the
// interface's directory and the parent it created; a parent another
// instance still uses stays.
func TestUnpinLeavesNoDirectory(t *testing.T) {
	root := bpffsMounted(t)
	a, err := LoadSteer(SteerOptions{PinPath: filepath.Join(root, "xdpipe", "a"), MapsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadSteer(SteerOptions{PinPath: filepath.Join(root, "xdpipe", "b"), MapsOnly: true})
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	for _, s := range []*Steer{a, b} {
		if err := s.Unpin(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := os.Stat(filepath.Join(root, "xdpipe")); (err == nil) != (s == a) {
			t.Fatalf("after unpinning %s: parent there: %v", s.pin, err == nil)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "xdpipe")); err == nil {
		t.Fatal("left behind: the pin directories' parent")
	}
}

// TestRulesChangeAfterPinsGoneSaysHow: when a running program's pins are
// removed under it, changing its rules fails saying what happened and how
// to recover; the rules in force stay.
func TestRulesChangeAfterPinsGoneSaysHow(t *testing.T) {
	pin := filepath.Join(bpffsMounted(t), "xdpipe", "veth0")
	s, err := LoadSteer(SteerOptions{PinPath: pin, MapsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	set := mustRules(t, "rules:\n  - {priority: 10, name: web, proto: tcp, dport: 80, action: redirect}\n")
	if err := s.Apply(set); err != nil {
		t.Fatal(err)
	}
	if err := RemovePins(pin); err != nil {
		t.Fatal(err)
	}
	err = s.Apply(mustRules(t, "rules: []\n"))
	if !errors.Is(err, ErrPinsGone) || !strings.Contains(err.Error(), "loaded again") || strings.Contains(err.Error(), "restart xdpipe") {
		t.Fatalf("apply after the pins went: %v", err)
	}
	if got, err := s.Rules(); err != nil || len(got.Rules) != 1 {
		t.Fatalf("rules in force: %v %v", got, err)
	}
}

// TestRemovePinsRemovesOnlyXdpipes: RemovePins removes what the steering
// program pins and nothing else: not a directory off bpffs, not a symbolic
// link, not another program's pin in the directory (it stays, with the
// directory, named in the error).
func TestRemovePinsRemovesOnlyXdpipes(t *testing.T) {
	root := bpffsMounted(t)
	plain := t.TempDir()
	important := filepath.Join(plain, "important.txt")
	if err := os.WriteFile(important, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(plain, link); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{plain, link} {
		if err := RemovePins(dir); err == nil || !strings.Contains(err.Error(), "not a directory on a bpffs") {
			t.Errorf("RemovePins(%s): %v", dir, err)
		}
	}
	if _, err := os.Stat(important); err != nil {
		t.Fatalf("RemovePins removed a file off bpffs: %v", err)
	}

	pin := filepath.Join(root, "xdpipe", "ns1-if7")
	s, err := LoadSteer(SteerOptions{PinPath: pin, MapsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Pin(filepath.Join(pin, "someone_elses")); err != nil {
		t.Fatal(err)
	}
	if err := RemovePins(pin); err == nil || !strings.Contains(err.Error(), "someone_elses") {
		t.Fatalf("RemovePins with another program's pin there: %v", err)
	}
	ents, err := os.ReadDir(pin)
	if err != nil || len(ents) != 1 || ents[0].Name() != "someone_elses" {
		t.Fatalf("left under %s: %v (%v), want only someone_elses", pin, ents, err)
	}
	other.Unpin()
	if err := RemovePins(pin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(pin)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("left behind: %v", err)
	}
}
