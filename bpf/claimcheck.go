//go:build linux

package bpf

import (
	"cmp"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CheckClaim refuses, as ClaimInterface would, an interface that a live
// xdpipe instance holds or a pinned steering program is attached to,
// without claiming it or cleaning up after a dead owner: for validating a
// configuration before anything is made. An interface this process holds
// passes (a reload checks its own).
func CheckClaim(ifindex int, opts ClaimOptions) error {
	dir := cmp.Or(opts.Dir, DefaultOwnerDir)
	id, err := LocalIface(ifindex)
	if err != nil {
		return fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	if err := checkEarlierLayout(dir, ifindex, opts); err != nil {
		return err
	}
	path := ownerPath(dir, id)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("claim interface %s: %w", opts.Name, err)
	}
	defer f.Close()
	rec, err := readOwner(path)
	switch {
	case err != nil:
		return fmt.Errorf("claim interface %s: %w", opts.Name, err)
	case rec.PID == os.Getpid():
		return nil
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return ownedBy(opts.Name, rec)
	}
	if rec.Pinned && linkAttached(rec.Pin, ifindex) && !opts.Replace {
		return &PinnedError{Name: opts.Name, Pin: rec.Pin}
	}
	return nil
}
