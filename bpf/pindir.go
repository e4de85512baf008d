//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// bpffsRoot is where bpffs is conventionally mounted, and mounted by
// ensurePinDir when a pin path below it finds nothing there.
const bpffsRoot = "/sys/fs/bpf"

// ensurePinDir makes dir ready for pins, or refuses it before creating
// anything (checkPinDir):
//   - it mounts bpffs at /sys/fs/bpf when dir is below it and nothing is
//     mounted there;
//   - the missing directories are created 0700.
func ensurePinDir(dir string) error {
	dir = filepath.Clean(dir)
	mount, err := checkPinDir(dir)
	if err != nil {
		return err
	}
	if mount {
		if err := os.MkdirAll(bpffsRoot, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", bpffsRoot, err)
		}
		if err := unix.Mount("bpffs", bpffsRoot, "bpf", 0, "mode=0700"); errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mount bpffs on %s: needs CAP_SYS_ADMIN; mount it before xdpipe starts (systemd: sys-fs-bpf.mount; a container: -v /sys/fs/bpf:/sys/fs/bpf from a host that has it): %w", bpffsRoot, err)
		} else if err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", bpffsRoot, err)
		}
		if _, err := checkPinDir(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	return nil
}

// CheckPinDir refuses a pin directory as the commands that pin would,
// creating and mounting nothing: for validating a configuration before
// anything is attached.
func CheckPinDir(dir string) error {
	_, err := checkPinDir(filepath.Clean(dir))
	return err
}

// checkPinDir says whether dir can hold pins:
//   - dir must be on a bpffs: a path elsewhere is refused;
//   - every directory on the way from the bpffs mount to dir that exists
//     must be owned by root (or the caller) and writable by no one else, so
//     no other user can rename or remove the pins (the mount itself may be
//     world-writable with the sticky bit, as bpffs is by default).
//
// mount: dir is below /sys/fs/bpf, where no bpffs is mounted yet;
// ensurePinDir mounts one there, and checks again.
func checkPinDir(dir string) (mount bool, err error) {
	var st unix.Statfs_t
	if rel, err := filepath.Rel(bpffsRoot, dir); err == nil && !filepath.IsAbs(rel) && len(rel) > 0 && rel[0] != '.' {
		if err := unix.Statfs(bpffsRoot, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
			return true, nil
		}
	}
	existing := dir
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	if err := unix.Statfs(existing, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		return false, fmt.Errorf("pin directory %s is not on a bpffs (mount -t bpf bpffs DIR)", dir)
	}
	root, err := bpffsMount(existing)
	if err != nil {
		return false, err
	}
	for d := existing; ; d = filepath.Dir(d) {
		if err := checkPinDirOwner(d, d == root); err != nil {
			return false, err
		}
		if d == root {
			return false, nil
		}
	}
}

// bpffsMount returns the root of the bpffs dir is on: the highest directory
// above it on the same bpffs (same device).
func bpffsMount(dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", fmt.Errorf("pin directory: %w", err)
	}
	for {
		parent := filepath.Dir(dir)
		var pst unix.Stat_t
		if parent == dir || unix.Stat(parent, &pst) != nil || pst.Dev != st.Dev {
			return dir, nil
		}
		dir = parent
	}
}

// ErrPinDirUnsafe: a directory on the way to the pins is another user's,
// or others may write to it, so they could rename or remove the pins.
var ErrPinDirUnsafe = errors.New("pin directory unsafe")

// checkPinDirOwner refuses a directory another user owns or may write to
// (a world-writable bpffs mount is fine with the sticky bit), with an
// error wrapping ErrPinDirUnsafe.
func checkPinDirOwner(dir string, mount bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("pin directory: %w", err)
	}
	mode := os.FileMode(st.Mode & 0o777)
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("pin directory %s: not a directory (a symbolic link?): remove it", dir)
	case mount && st.Mode&unix.S_ISVTX != 0:
		return nil
	case st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%w: %s is owned by uid %d, not root: another user could rename or remove the pins; remove it", ErrPinDirUnsafe, dir, st.Uid)
	case mode&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %v: writable by others, who could rename or remove the pins; chmod go-w it", ErrPinDirUnsafe, dir, mode)
	}
	return nil
}

// removePinDir removes dir, which must be empty, and then its parents
// while they are empty, up to the bpffs mount: a stop leaves no directory
// behind. A parent another instance still uses stays.
func removePinDir(dir string) error {
	dir = filepath.Clean(dir)
	root, err := bpffsMount(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for d := filepath.Dir(dir); d != root && len(d) > len(root); d = filepath.Dir(d) {
		if os.Remove(d) != nil { // not empty: someone else's
			break
		}
	}
	return nil
}
