//go:build linux

package bpf

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultOwnerDir holds the owner files of the interfaces xdpipe instances
// hold (a tmpfs: a reboot clears it with the attachments).
const DefaultOwnerDir = "/run/xdpipe/owners"

// ErrInterfaceOwned: another xdpipe instance, or a pinned steering program,
// holds the interface.
var ErrInterfaceOwned = errors.New("interface held by another xdpipe instance")

// ClaimOptions tune ClaimInterface. The zero value claims for a running
// instance with no pins, under DefaultOwnerDir.
type ClaimOptions struct {
	// Name is the interface's name, for messages.
	Name string
	// PinPath is the directory the claimant pins its maps (or links)
	// under: a later claim that finds this owner gone removes it.
	PinPath string
	// Replace accepts an interface held by a pinned steering program that
	// no process runs (`xdpipe rules attach`), to replace or detach it. A
	// running instance is never replaced.
	Replace bool
	// Dir holds the owner files (default DefaultOwnerDir).
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
	Pin  string `json:"pin,omitempty"`
	// Pinned: the attachment outlives the process (rules attach).
	Pinned bool `json:"pinned,omitempty"`
}

// ClaimInterface makes the caller the owner of interface ifindex (in the
// calling thread's network namespace), or refuses with ErrInterfaceOwned
// before anything of the interface is touched. Call it first: before
// loading or opening pinned maps, applying rules or attaching.
//
// Ownership is an flock(2) on an owner file named by the network namespace
// and the interface index, holding the owner's pid and pin path. The lock
// goes with the process however it ends, so an owner killed with -9 is
// found stale by the next claim, which removes the pins it left (its
// program went with its links). A pinned steering program (`rules attach`)
// stays the owner after its process exits, until a claim with Replace (SetPinned).
func ClaimInterface(ifindex int, opts ClaimOptions) (*Claim, error) {
	dir := cmp.Or(opts.Dir, DefaultOwnerDir)
	var ns unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &ns); err != nil {
		return nil, fmt.Errorf("claim interface %s: network namespace: %w", opts.Name, err)
	}
	return claim(dir, filepath.Join(dir, fmt.Sprintf("net%d-if%d.owner", ns.Ino, ifindex)), opts)
}

// ClaimPinned claims the interface whose owner pins under pin, as
// ClaimInterface would, for a command that names the pins rather than the
// interface (rules detach --pin). Nil, and no error: no owner record names
// pin.
func ClaimPinned(pin string, opts ClaimOptions) (*Claim, error) {
	dir := cmp.Or(opts.Dir, DefaultOwnerDir)
	files, _ := filepath.Glob(filepath.Join(dir, "*.owner"))
	for _, path := range files {
		if rec, err := readOwner(path); err == nil && rec.Pin == pin {
			opts.Name = cmp.Or(opts.Name, rec.Name)
			return claim(dir, path, opts)
		}
	}
	return nil, nil
}

// claim takes the owner file at path in dir.
func claim(dir, path string, opts ClaimOptions) (*Claim, error) {
	var f *os.File
	var err error
	for range 10 { // the last owner's Release may remove dir in between
		if err = os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
		}
		if err := checkPinDirOwner(dir, false); err != nil {
			return nil, fmt.Errorf("claim interface %s: owner directory: %w", opts.Name, err)
		}
		if f, err = lockOwnerFile(path); !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		rec, _ := readOwner(path)
		pins := ""
		if rec.Pin != "" {
			pins = " (pins under " + rec.Pin + ")"
		}
		return nil, fmt.Errorf("%s: %w: xdpipe pid %d runs on it%s; stop it first, or use another interface",
			opts.Name, ErrInterfaceOwned, rec.PID, pins)
	}
	if err != nil {
		return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	c := &Claim{f: f, path: path, rec: ownerRecord{PID: os.Getpid(), Name: opts.Name, Pin: opts.PinPath}}
	prev, err := readOwner(path)
	if err != nil {
		c.Release()
		return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	if prev.PID != 0 {
		live := prev.Pinned && prev.Pin != "" && pinsPresent(prev.Pin)
		c.rec.Pinned = live
		if live && !opts.Replace {
			c.f.Close() // keep the file: the pinned program still owns
			return nil, fmt.Errorf("%s: %w: a pinned steering program (pins under %s) is attached; remove it with `xdpipe rules detach --iface %s`",
				opts.Name, ErrInterfaceOwned, prev.Pin, prev.Name)
		}
		if !live {
			c.Stale = fmt.Sprintf("xdpipe pid %d ended without cleaning up", prev.PID)
			if prev.Pin != "" {
				if err := RemovePins(prev.Pin); err != nil {
					c.Release()
					return nil, fmt.Errorf("claim interface %s: remove the pins pid %d left under %s: %w", opts.Name, prev.PID, prev.Pin, err)
				}
				c.Stale += "; removed its pins under " + prev.Pin
			}
		}
	}
	if err := c.write(); err != nil {
		c.Release()
		return nil, fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	return c, nil
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
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("owner file %s: %w (remove it if no xdpipe runs)", path, err)
	}
	return rec, nil
}

// pinsPresent: a steering program's pins are under dir.
func pinsPresent(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "steer_active"))
	return err == nil
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
