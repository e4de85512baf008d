//go:build linux

package bpf

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DefaultOwnerDir holds the owner files of the interfaces xdpipe instances
// hold (a tmpfs: a reboot clears it with the attachments).
const DefaultOwnerDir = "/run/xdpipe/owners"

// ErrInterfaceOwned: another xdpipe instance, or a pinned steering program,
// holds the interface.
var ErrInterfaceOwned = errors.New("interface held by another xdpipe instance")

// PinnedError: a pinned steering program is attached to the interface
// (ClaimInterface without Replace). It wraps ErrInterfaceOwned.
type PinnedError struct {
	// Name is the interface's; Pin the program's pin directory.
	Name, Pin string
}

func (e *PinnedError) Error() string {
	return fmt.Sprintf("%s: %v: a pinned steering program (pins under %s) is attached", e.Name, ErrInterfaceOwned, e.Pin)
}

func (e *PinnedError) Unwrap() error { return ErrInterfaceOwned }

// ClaimOptions tune ClaimInterface. The zero value claims for a running
// instance that pins under DefaultPinPath, with owner files under
// DefaultOwnerDir.
type ClaimOptions struct {
	// Name is the interface's name, for messages.
	Name string
	// PinDir is the bpffs directory under which the claimant pins, in the
	// interface's own directory (Claim.PinPath; default DefaultPinPath).
	// A claim that finds the owner gone removes the pins it left there,
	// and nowhere else.
	PinDir string
	// Replace accepts an interface held by a pinned steering program that
	// no process runs (`xdpipe rules attach`), to replace or detach it. A
	// running instance is never replaced.
	Replace bool
	// Dir holds the owner files (default DefaultOwnerDir). It and the
	// directory above it must be root's, writable by no one else.
	Dir string
}

// Claim is the ownership of an interface's XDP hook and pins, from
// ClaimInterface until Release (or the process's end, even by kill -9).
type Claim struct {
	f    *os.File
	path string
	rec  ownerRecord
	// Stale describes the owner found dead and cleaned up ("" if none), for
	// the caller's log.
	Stale string
}

// ownerRecord is an owner file's content.
type ownerRecord struct {
	PID  int    `json:"pid"`
	Name string `json:"iface"`
	// Pin is the owner's pin directory (PinPathFor), whether or not it
	// pinned anything.
	Pin string `json:"pin,omitempty"`
	// Pinned: the attachment outlives the process (rules attach).
	Pinned bool `json:"pinned,omitempty"`
}

// ClaimInterface makes the caller the owner of interface ifindex (in the
// calling thread's network namespace), or refuses with ErrInterfaceOwned
// before anything of the interface is touched. Call it first: before
// loading or opening pinned maps, applying rules or attaching; then pin
// under Claim.PinPath, if at all.
//
// Ownership is an flock(2) on an owner file named by the interface's
// IfaceID, holding the owner's pid and pin directory. The lock goes with
// the process however it ends, so an owner killed with -9 is found stale
// by the next claim, which removes the pins it left (its program went
// with its links). A pinned steering program (`rules attach`) stays the
// owner after its process exits, while its link is attached, until a
// claim with Replace (SetPinned).
func ClaimInterface(ifindex int, opts ClaimOptions) (*Claim, error) {
	dir := cmp.Or(opts.Dir, DefaultOwnerDir)
	id, err := LocalIface(ifindex)
	if err != nil {
		return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	if err := checkEarlierLayout(dir, ifindex, opts); err != nil {
		return nil, err
	}
	return claim(dir, id, opts)
}

// checkEarlierLayout refuses an interface that an xdpipe of the layout
// before IfaceID may hold: an owner file named by the namespace's inode
// number that a process still locks, or maps pinned under the pin
// directory by the interface's name. Neither is taken over or removed:
// a name may be another namespace's interface's.
func checkEarlierLayout(dir string, ifindex int, opts ClaimOptions) error {
	var ns unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &ns); err != nil {
		return fmt.Errorf("claim interface %s: network namespace: %w", opts.Name, err)
	}
	path := filepath.Join(dir, fmt.Sprintf("net%d-if%d.owner", ns.Ino, ifindex))
	if f, err := os.Open(path); err == nil {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			rec, _ := readOwner(path)
			return fmt.Errorf("%s: %w: xdpipe pid %d (an earlier version) runs on it; stop it first, or use another interface", opts.Name, ErrInterfaceOwned, rec.PID)
		}
	}
	if opts.Name == "" {
		return nil
	}
	if _, ok := ParseIfaceID(opts.Name); ok {
		return nil
	}
	if old := filepath.Join(cmp.Or(opts.PinDir, DefaultPinPath), opts.Name); pinsPresent(old) {
		return fmt.Errorf("%s: %w: an earlier xdpipe version pinned maps under %s; once no earlier xdpipe runs on %[1]s, remove them (that directory)", opts.Name, ErrInterfaceOwned, old)
	}
	return nil
}

// ClaimPinned claims the interface whose pins are under pin (a directory
// PinPathFor names), as ClaimInterface would, for a command that names the
// pins rather than the interface (rules detach). Nil, and no error: no
// owner record names pin.
func ClaimPinned(pin string, opts ClaimOptions) (*Claim, error) {
	pin = filepath.Clean(pin)
	id, ok := ParseIfaceID(filepath.Base(pin))
	if !ok {
		return nil, nil
	}
	dir := cmp.Or(opts.Dir, DefaultOwnerDir)
	rec, err := readOwner(ownerPath(dir, id))
	if err != nil || rec.Pin != pin {
		return nil, nil
	}
	opts.Name = cmp.Or(opts.Name, rec.Name)
	opts.PinDir = filepath.Dir(pin)
	return claim(dir, id, opts)
}

// ownerPath is the owner file of interface id in dir.
func ownerPath(dir string, id IfaceID) string { return filepath.Join(dir, id.String()+".owner") }

// claim takes the owner file of interface id in dir.
func claim(dir string, id IfaceID, opts ClaimOptions) (*Claim, error) {
	path := ownerPath(dir, id)
	var f *os.File
	var err error
	for range 10 { // the last owner's Release may remove dir in between
		if err = os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
		}
		if err := checkStateDirs(dir); err != nil {
			return nil, err
		}
		if f, err = lockOwnerFile(path); !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		rec, _ := readOwner(path)
		return nil, ownedBy(opts.Name, rec)
	}
	if err != nil {
		return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	pin := PinPathFor(opts.PinDir, id)
	c := &Claim{f: f, path: path, rec: ownerRecord{PID: os.Getpid(), Name: opts.Name, Pin: pin}}
	prev, err := readOwner(path)
	if err != nil {
		c.Release()
		return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	if prev.PID != 0 {
		// A record names pins to remove only where this claim would pin
		// them: nothing else is provably the dead owner's. A pinned
		// program owns while its link is attached to this interface;
		// one pinned elsewhere is left to be detached there.
		ours := filepath.Clean(prev.Pin) == pin
		live := prev.Pinned && linkAttached(prev.Pin, id.Ifindex)
		if live && (!opts.Replace || !ours) {
			c.f.Close() // keep the file: the pinned program still owns
			return nil, &PinnedError{Name: opts.Name, Pin: prev.Pin}
		}
		c.rec.Pinned = live
		if !live {
			c.Stale = fmt.Sprintf("xdpipe pid %d ended without cleaning up", prev.PID)
			if prev.Pinned && ours {
				c.Stale = fmt.Sprintf("the steering program xdpipe pid %d pinned is no longer attached", prev.PID)
			}
			if prev.Pin != "" && !ours {
				c.Stale += "; left what its record names (" + prev.Pin + "): not the pin directory " + pin
			}
			if pinsPresent(pin) {
				if err := RemovePins(pin); err != nil {
					c.Release()
					return nil, fmt.Errorf("claim interface %s: remove the pins pid %d left: %w", opts.Name, prev.PID, err)
				}
				c.Stale += "; removed its pins under " + pin
			}
		}
	}
	if err := c.write(); err != nil {
		c.Release()
		return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	return c, nil
}

// ownedBy is the refusal of interface name, which the live instance of
// record rec holds.
func ownedBy(name string, rec ownerRecord) error {
	pins := ""
	if pinsPresent(rec.Pin) {
		pins = " (pins under " + rec.Pin + ")"
	}
	return fmt.Errorf("%s: %w: xdpipe pid %d runs on it%s; stop it first, or use another interface", name, ErrInterfaceOwned, rec.PID, pins)
}

// PinPath is the directory the claimant pins under, if it pins
// (ClaimOptions.PinDir).
func (c *Claim) PinPath() string { return c.rec.Pin }

// checkStateDirs refuses an owner directory, or the state directory
// above it, that another user owns or may write to: they could replace
// the records (make owners/ first, or rename it under a running instance)
// and so let two instances share an interface.
func checkStateDirs(dir string) error {
	for _, d := range []struct{ what, path, why string }{
		{"state directory", filepath.Dir(dir), "replace the owner directory in it"},
		{"owner directory", dir, "replace the owner records in it"},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(d.path, &st); err != nil {
			return fmt.Errorf("%s %s: %w", d.what, d.path, err)
		}
		switch {
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return fmt.Errorf("%s %s is not a directory (a symbolic link?); remove it", d.what, d.path)
		case st.Uid != 0 && int(st.Uid) != os.Geteuid():
			return fmt.Errorf("%s %s is owned by uid %d, not root, who could %s; remove it, or chown root it", d.what, d.path, st.Uid, d.why)
		case st.Mode&0o022 != 0:
			return fmt.Errorf("%s %s has mode %04o: others may write to it and %s; chmod go-w it", d.what, d.path, st.Mode&0o7777, d.why)
		}
	}
	return nil
}

// lockOwnerFile opens and locks the owner file at path, retrying when a
// releasing owner removed it between the open and the lock.
func lockOwnerFile(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, err
		}
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino {
			return f, nil
		}
		f.Close()
	}
}

func readOwner(path string) (ownerRecord, error) {
	var rec ownerRecord
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID <= 0 {
		return ownerRecord{}, fmt.Errorf("owner file %s is not an owner record (remove it if no xdpipe runs)", path)
	}
	return rec, nil
}

// pinsPresent: a steering program's pins are under dir.
func pinsPresent(dir string) bool {
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "steer_active"))
	return err == nil
}

// linkAttached: the XDP link pinned under pin for interface ifindex is
// attached (a link whose interface went, with its namespace or alone, is
// still pinned but attached to nothing).
func linkAttached(pin string, ifindex int) bool {
	if !filepath.IsAbs(pin) {
		return false
	}
	l, err := link.LoadPinnedLink(filepath.Join(pin, fmt.Sprintf("link-%d", ifindex)), nil)
	if err != nil {
		return false
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return false
	}
	xdp := info.XDP()
	return xdp != nil && xdp.Ifindex == uint32(ifindex)
}

func (c *Claim) write() error {
	b, err := json.Marshal(c.rec)
	if err != nil {
		return err
	}
	if err := c.f.Truncate(0); err != nil {
		return err
	}
	if _, err := c.f.WriteAt(append(b, '\n'), 0); err != nil {
		return err
	}
	return nil
}

// SetPinned records whether an attachment outlives the process (a pinned
// link): after Release the interface then stays owned until a claim with
// Replace. A claim that replaced a pinned attachment starts pinned: it is
// still there until removed (rules detach: SetPinned(false)).
func (c *Claim) SetPinned(pinned bool) error {
	c.rec.Pinned = pinned
	if err := c.write(); err != nil {
		return fmt.Errorf("claim interface %s: %w", c.rec.Name, err)
	}
	return nil
}

// Release gives the interface up: the owner file goes, unless SetPinned
// said the attachment outlives the process. Call it after removing the
// pins. Idempotent.
func (c *Claim) Release() error {
	if c.f == nil {
		return nil
	}
	var err error
	if !c.rec.Pinned {
		// Removed while locked: a claimant that opened it before sees
		// another inode at path after its lock, and retries.
		if rerr := os.Remove(c.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("release interface %s: %w", c.rec.Name, rerr)
		}
		_ = os.Remove(filepath.Dir(c.path)) // when it was the last: nothing left behind
	}
	c.f.Close()
	c.f = nil
	return err
}
