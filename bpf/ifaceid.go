//go:build linux

package bpf

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/ifname"
)

// IfaceID names an interface as its owner record and its pins are named:
// its network namespace and its index there. An interface's name can pass
// to another interface (a rename, a namespace of its own with the same
// name); its IfaceID cannot.
type IfaceID struct {
	// Netns is the namespace: "ns" and its cookie (SO_NETNS_COOKIE), a
	// number the kernel never gives another namespace until reboot; on
	// kernels without cookies (before 5.14), "ino" and the namespace's
	// inode number, which a later namespace may get once it is freed.
	Netns string
	// Ifindex is the interface's index in the namespace.
	Ifindex int
}

// String is the ID as a file name: NETNS-ifINDEX ("ns12-if3").
func (id IfaceID) String() string { return id.Netns + "-if" + strconv.Itoa(id.Ifindex) }

// ParseIfaceID parses String's form; false if s is not one.
func ParseIfaceID(s string) (IfaceID, bool) {
	ns, idx, ok := strings.Cut(s, "-if")
	n, err := strconv.Atoi(idx)
	if !ok || err != nil || n <= 0 || strconv.Itoa(n) != idx {
		return IfaceID{}, false
	}
	for _, prefix := range []string{"ns", "ino"} {
		if num, ok := strings.CutPrefix(ns, prefix); ok {
			if v, err := strconv.ParseUint(num, 10, 64); err == nil && strconv.FormatUint(v, 10) == num {
				return IfaceID{Netns: ns, Ifindex: n}, true
			}
		}
	}
	return IfaceID{}, false
}

// Netns names the calling thread's network namespace as IfaceID.Netns
// does.
func Netns() (string, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("network namespace: %w", err)
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	unix.Close(fd)
	if err == nil {
		return "ns" + strconv.FormatUint(cookie, 10), nil
	}
	if !errors.Is(err, unix.ENOPROTOOPT) {
		return "", fmt.Errorf("network namespace cookie: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", fmt.Errorf("network namespace: %w", err)
	}
	return "ino" + strconv.FormatUint(st.Ino, 10), nil
}

// LocalIface returns the IfaceID of interface ifindex of the calling
// thread's network namespace.
func LocalIface(ifindex int) (IfaceID, error) {
	ns, err := Netns()
	return IfaceID{Netns: ns, Ifindex: ifindex}, err
}

// LookupIface resolves an interface name in the calling thread's network
// namespace.
func LookupIface(name string) (IfaceID, error) {
	i, err := ifname.Index(name)
	if err != nil {
		return IfaceID{}, fmt.Errorf("interface %q not found in this network namespace", name)
	}
	return LocalIface(i)
}

// PinPathFor is where the steering program of interface id pins its maps
// (and links) under pinDir (DefaultPinPath when empty): a directory of its
// own, named by id, so that no other interface, whatever its name or
// namespace, ever shares it.
func PinPathFor(pinDir string, id IfaceID) string {
	return filepath.Join(cmp.Or(pinDir, DefaultPinPath), id.String())
}
